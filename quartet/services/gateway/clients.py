"""gRPC clients of the other services, opened and closed with the app.

A down service must fail a request fast and be used again as soon as it is
back: calls never wait for readiness (``wait_for_ready=False``), and each
service's channel is a ``common.channels.ServiceChannel`` (short reconnect
backoff, replaced when found broken), as in the router's clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import grpc
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc

from quartet.services.common.channels import ServiceChannel
from quartet.services.gateway.errors import from_rpc_error, from_status_name
from quartet.services.gateway.router_client import RouterClient
from quartet.services.gateway.settings import GatewaySettings


class StreamObserver(Protocol):
    """Sees every event of a Generate stream, then ``close()`` once (metrics.GenerationMeter)."""

    def on_event(self, event: engine_pb2.GenerateResponse) -> None: ...

    def close(self) -> None: ...


class GenerateStream:
    """One running ``Generate`` call: yields Chunk and Complete events, raises typed errors.

    An in-stream Error event and a failed call both raise the matching
    ``quartet.services.common.errors`` type. ``cancel()`` aborts the request in the engine.
    """

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall,
        engine: EngineClient,
        channel: grpc.aio.Channel,
        observer: StreamObserver | None = None,
    ) -> None:
        self._call = call
        self._engine = engine
        self._channel = channel
        self._observer = observer
        self._peeked: engine_pb2.GenerateResponse | None = None

    async def peek(self) -> engine_pb2.GenerateResponse | None:
        """The first event, read now so that a failure surfaces before any answer is sent."""
        if self._peeked is None:
            self._peeked = await self._read()
        return self._peeked

    async def _read(self) -> engine_pb2.GenerateResponse | None:
        try:
            event = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise self._engine.failure(error, self._channel) from None
        if event is grpc.aio.EOF:
            return None
        if self._observer is not None:
            self._observer.on_event(event)
        if event.WhichOneof("event") == "error":
            raise from_status_name(event.error.code, event.error.message, service="engine", address=self._engine.address)
        return event

    async def events(self) -> AsyncIterator[engine_pb2.GenerateResponse]:
        try:
            if self._peeked is not None:
                event, self._peeked = self._peeked, None
                yield event
            while (event := await self._read()) is not None:
                yield event
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Abort the engine request if it still runs; safe to call any number of times."""
        if not self._call.done():
            self._call.cancel()
        if self._observer is not None:
            self._observer.close()


class EngineClient:
    """The engine's RPCs as the gateway uses them."""

    def __init__(self, channel: ServiceChannel, *, rpc_timeout_seconds: float, request_timeout_seconds: float) -> None:
        self._channel = channel
        self._rpc_timeout = rpc_timeout_seconds
        self._request_timeout = request_timeout_seconds

    @property
    def address(self) -> str:
        return self._channel.address

    def failure(self, error: grpc.aio.AioRpcError, channel: grpc.aio.Channel) -> Exception:
        self._channel.after_failure(channel, error)
        return from_rpc_error(error, service="engine", address=self.address)

    async def model_info(self) -> engine_pb2.GetModelInfoResponse:
        channel = self._channel.get()
        try:
            return await engine_pb2_grpc.EngineServiceStub(channel).GetModelInfo(
                engine_pb2.GetModelInfoRequest(), timeout=self._rpc_timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as error:
            raise self.failure(error, channel) from None

    def generate(self, request: engine_pb2.GenerateRequest, observer: StreamObserver | None = None) -> GenerateStream:
        channel = self._channel.get()
        call = engine_pb2_grpc.EngineServiceStub(channel).Generate(
            request, timeout=self._request_timeout, wait_for_ready=False
        )
        return GenerateStream(call, self, channel, observer)


@dataclass
class Clients:
    """Everything the gateway talks to, keyed by service name in ``channels``."""

    engine: EngineClient
    channels: dict[str, ServiceChannel]
    #: The router's agents (``agent/<name>`` models); None when built without one.
    router: RouterClient | None = None

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Clients:
        """Build the clients; call inside the event loop that will use them."""
        addresses = {
            "engine": settings.engine_address,
            "router": settings.router_address,
            "memory": settings.memory_address,
        }
        channels = {
            name: ServiceChannel(
                name,
                address,
                connect_timeout_seconds=settings.connect_timeout_seconds,
                drain_seconds=settings.request_timeout_seconds,
            )
            for name, address in addresses.items()
        }
        engine = EngineClient(
            channels["engine"],
            rpc_timeout_seconds=settings.rpc_timeout_seconds,
            request_timeout_seconds=settings.request_timeout_seconds,
        )
        router = RouterClient(
            channels["router"],
            rpc_timeout_seconds=settings.rpc_timeout_seconds,
            request_timeout_seconds=settings.request_timeout_seconds,
            cache_seconds=settings.models_cache_seconds,
        )
        return cls(engine=engine, channels=channels, router=router)

    async def health(self, timeout: float) -> dict[str, str]:
        names = list(self.channels)
        statuses = await asyncio.gather(*(self.channels[name].health(timeout) for name in names))
        return dict(zip(names, statuses))

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))

