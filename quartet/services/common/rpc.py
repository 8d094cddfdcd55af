"""How one Quartet service calls another: channel options, deadlines, reconnection, errors.

The gateway's and the router's clients all go through ``Upstream``, so a failure
means the same thing whichever service saw it:

* Message limits: ``CHANNEL_OPTIONS``, shared with the servers (``grpc_server``).
* Deadlines: every call has one (``Deadlines``): a short one for unary calls, a long
  one for streams that generate. Nothing waits for a down service
  (``wait_for_ready=False``), so a request fails fast instead of hanging.
* Reconnection: backoff is capped at about a second (``reconnect_options``), and a
  channel seen in TRANSIENT_FAILURE after a failed call is replaced by a fresh one
  (``ServiceChannel.after_failure``), whose first call connects at once instead of
  waiting out the old backoff. So a restarted service is used again within a second.
* Retries: none inside the client. Generation is not idempotent (a retried Generate
  runs twice and bills twice), and the unary calls are cheap enough that the caller
  retrying is better than the client hiding seconds of retries behind a deadline;
  the gateway tells HTTP clients when to retry (Retry-After on a 503).
* Errors: a gRPC status becomes the ``common.errors`` type of the same meaning, and
  the ``quartet-field`` trailer (set by ``grpc_server`` for a typed error with a
  field) becomes its ``field``, so the bad field is named at every hop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quartet.services.common.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    QuartetError,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)

log = logging.getLogger(__name__)

#: Messages up to 64 MiB: token id lists of long prompts exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

#: Trailing-metadata key carrying an error's ``field``, so every hop can name the bad field.
FIELD_METADATA_KEY = "quartet-field"


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds a call may take: unary calls, and streams (which run as long as a generation)."""

    rpc_seconds: float
    stream_seconds: float

    def __post_init__(self) -> None:
        if self.rpc_seconds <= 0 or self.stream_seconds <= 0:
            raise ValueError(f"deadlines must be positive, got {self}")


def reconnect_options(connect_timeout_seconds: float) -> list[tuple[str, int]]:
    """Channel options that reconnect within about a second and give up connecting in time."""
    connect_ms = max(100, int(connect_timeout_seconds * 1000))
    return [
        *CHANNEL_OPTIONS,
        # gRPC uses the minimum reconnect backoff as the connect deadline (default 20 s).
        ("grpc.min_reconnect_backoff_ms", connect_ms),
        ("grpc.initial_reconnect_backoff_ms", min(connect_ms, 250)),
        ("grpc.max_reconnect_backoff_ms", max(connect_ms, 1000)),
    ]


# --- status -> typed error ------------------------------------------------------------------

_BY_CODE: dict[grpc.StatusCode, type[QuartetError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def error_from_status(
    code: grpc.StatusCode, details: str, *, service: str, address: str, field: str | None = None
) -> QuartetError:
    """The typed error for a status ``service`` (at ``address``) answered with."""
    details = details or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"{service} unavailable at {address}: {details}; check that it is running")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{service} at {address} did not finish in time: {details}")
    if code == grpc.StatusCode.CANCELLED:
        return Aborted(f"{service} at {address} cancelled the request: {details}; retry it")
    error_type = _BY_CODE.get(code)
    if error_type is not None:
        # The service's own message already says what was wrong and what to do.
        return error_type(details, field=field)
    return Internal(f"{service} at {address} failed with {code.name}: {details}")


def field_of(error: grpc.aio.AioRpcError) -> str | None:
    """The field a failed call's trailer names, if any."""
    trailing = error.trailing_metadata() or ()
    return next((value for key, value in trailing if key == FIELD_METADATA_KEY), None)


def error_from_rpc(error: grpc.aio.AioRpcError, *, service: str, address: str) -> QuartetError:
    return error_from_status(
        error.code(), error.details() or "", service=service, address=address, field=field_of(error)
    )


def error_from_status_name(name: str, message: str, *, service: str, address: str) -> QuartetError:
    """The typed error for an in-stream error event, whose code is a status name (engine.v1.Error)."""
    code = grpc.StatusCode.__members__.get(name.upper(), grpc.StatusCode.INTERNAL) if name else grpc.StatusCode.INTERNAL
    return error_from_status(code, message, service=service, address=address)


# --- channels -------------------------------------------------------------------------------

_BROKEN_STATES = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)


class ServiceChannel:
    """The channel to one service, replaced when it is found broken.

    An empty address means the service is not configured (``enabled`` is false).
    """

    def __init__(self, name: str, address: str, *, connect_timeout_seconds: float, drain_seconds: float) -> None:
        self.name = name
        self.address = address
        self._drain_seconds = drain_seconds
        self._options = reconnect_options(connect_timeout_seconds)
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


# --- calls ----------------------------------------------------------------------------------

ResponseT = TypeVar("ResponseT", bound=Message)


def _same_field(field: str | None) -> str | None:
    return field


class Stream(Generic[ResponseT]):
    """One running server-streaming call: ``read()`` or ``async for`` messages, failures as typed errors.

    Whoever stops reading early calls ``cancel()``, which the server sees as a
    cancellation (the engine aborts the request's work); it is a no-op once the call ended.
    """

    def __init__(self, call: grpc.aio.UnaryStreamCall, upstream: Upstream, channel: grpc.aio.Channel) -> None:
        self._call = call
        self._upstream = upstream
        self._channel = channel

    async def read(self) -> ResponseT | None:
        """The next message; None at the end of the stream."""
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise self._upstream.failure(error, self._channel) from None
        return None if message is grpc.aio.EOF else message

    def cancel(self) -> None:
        if not self._call.done():
            self._call.cancel()

    def __aiter__(self) -> Stream[ResponseT]:
        return self

    async def __anext__(self) -> ResponseT:
        message = await self.read()
        if message is None:
            raise StopAsyncIteration
        return message


class Upstream:
    """One service as a client calls it: its channel, the deadlines and the error mapping.

    ``field_name`` turns the trailer's field into the caller's vocabulary (the gateway
    names OpenAI parameters); by default it is kept as the service named it.
    """

    def __init__(
        self,
        channel: ServiceChannel,
        deadlines: Deadlines,
        *,
        field_name: Callable[[str | None], str | None] = _same_field,
    ) -> None:
        self.channel = channel
        self.deadlines = deadlines
        self._field_name = field_name

    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def address(self) -> str:
        return self.channel.address

    @property
    def enabled(self) -> bool:
        return self.channel.enabled

    def failure(self, error: grpc.aio.AioRpcError, channel: grpc.aio.Channel) -> QuartetError:
        """The typed error for a failed call on ``channel``, replacing the channel if it broke."""
        self.channel.after_failure(channel, error)
        typed = error_from_rpc(error, service=self.name, address=self.address)
        typed.field = self._field_name(typed.field)
        return typed

    def stream_error(self, code_name: str, message: str) -> QuartetError:
        """The typed error for an error event inside a stream (a status name and a message)."""
        return error_from_status_name(code_name, message, service=self.name, address=self.address)

    async def unary(self, stub_type: Callable[[grpc.aio.Channel], Any], method: str, request: Message) -> Any:
        """``stub_type(channel).method(request)`` with the unary deadline; typed errors on failure."""
        channel = self.channel.get()
        try:
            return await getattr(stub_type(channel), method)(
                request, timeout=self.deadlines.rpc_seconds, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as error:
            raise self.failure(error, channel) from None

    def stream(self, stub_type: Callable[[grpc.aio.Channel], Any], method: str, request: Message) -> Stream:
        """Start a server-streaming call with the stream deadline."""
        channel = self.channel.get()
        call = getattr(stub_type(channel), method)(request, timeout=self.deadlines.stream_seconds, wait_for_ready=False)
        return Stream(call, self, channel)

    async def close(self) -> None:
        await self.channel.close()
