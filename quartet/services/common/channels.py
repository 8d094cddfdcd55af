"""The channel to one upstream service, shared by every client of another service.

A down service must fail a request fast and be used again as soon as it is
back. Three things make that so: callers never wait for readiness
(``wait_for_ready=False``) and give every call a deadline; reconnection backoff
is capped at about a second, so a channel retries soon after a restart; and a
channel seen in TRANSIENT_FAILURE after a failed call is replaced by a fresh
one, whose first call connects at once instead of waiting out the old backoff.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

_BROKEN_STATES = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)


class ServiceChannel:
    """The channel to one service, replaced when it is found broken.

    An empty address means the service is not configured (``enabled`` is false).
    """

    def __init__(self, name: str, address: str, *, connect_timeout_seconds: float, drain_seconds: float) -> None:
        self.name = name
        self.address = address
        self._drain_seconds = drain_seconds
        connect_ms = max(100, int(connect_timeout_seconds * 1000))
        self._options = [
            *CHANNEL_OPTIONS,
            # gRPC uses the minimum reconnect backoff as the connect deadline (default 20 s).
            ("grpc.min_reconnect_backoff_ms", connect_ms),
            ("grpc.initial_reconnect_backoff_ms", min(connect_ms, 250)),
            ("grpc.max_reconnect_backoff_ms", max(connect_ms, 1000)),
        ]
        self._channel: grpc.aio.Channel | None = None
        self._retiring: set[asyncio.Task] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def get(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=self._options)
        return self._channel

    def after_failure(self, channel: grpc.aio.Channel, error: grpc.aio.AioRpcError) -> None:
        """Call when an RPC on ``channel`` failed: after UNAVAILABLE, a broken channel is replaced."""
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            return
        if channel is not self._channel or channel.get_state(try_to_connect=False) not in _BROKEN_STATES:
            return
        log.debug("replacing broken channel", extra={"service_name": self.name, "address": self.address})
        self._channel = None
        # Calls still running on the old channel keep it until they end (or the drain time passes).
        task = asyncio.get_running_loop().create_task(channel.close(self._drain_seconds))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def health(self, timeout: float) -> str:
        """This service's grpc.health.v1 status name, "UNREACHABLE" or "disabled"."""
        if not self.enabled:
            return "disabled"
        channel = self.get()
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as error:
            self.after_failure(channel, error)
            unreachable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            return "UNREACHABLE" if error.code() in unreachable else error.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def close(self) -> None:
        channels = [self._channel] if self._channel is not None else []
        self._channel = None
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*(channel.close(None) for channel in channels), *self._retiring, return_exceptions=True)
