"""The one client of the engine's RPCs, used by the gateway (protos as they are) and the router
(through its domain adapter, ``quartet.services.router.engine_client``).

Transport, deadlines and error mapping are ``quartet.services.common.rpc``'s; what is the
engine's own is its in-stream ``Error`` event, raised here as the typed error its status
name means, so a caller never has to look for one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from quartet.engine.v1 import engine_pb2, engine_pb2_grpc

from quartet.services.common.rpc import Stream, Upstream


class StreamObserver(Protocol):
    """Sees every event of a Generate stream, then ``close()`` once (gateway.metrics.GenerationMeter)."""

    def on_event(self, event: engine_pb2.GenerateResponse) -> None: ...

    def close(self) -> None: ...


class GenerateStream:
    """One running ``Generate`` call: yields Chunk and Complete events, raises typed errors.

    An in-stream Error event and a failed call both raise the matching
    ``quartet.services.common.errors`` type. ``cancel()`` aborts the request in the engine.
    """

    def __init__(self, stream: Stream, upstream: Upstream, observer: StreamObserver | None = None) -> None:
        self._stream = stream
        self._upstream = upstream
        self._observer = observer
        self._peeked: engine_pb2.GenerateResponse | None = None

    async def peek(self) -> engine_pb2.GenerateResponse | None:
        """The first event, read now so that a failure surfaces before any answer is sent."""
        if self._peeked is None:
            self._peeked = await self._read()
        return self._peeked

    async def _read(self) -> engine_pb2.GenerateResponse | None:
        event = await self._stream.read()
        if event is None:
            return None
        if self._observer is not None:
            self._observer.on_event(event)
        if event.WhichOneof("event") == "error":
            raise self._upstream.stream_error(event.error.code, event.error.message)
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
        self._stream.cancel()
        if self._observer is not None:
            self._observer.close()


class EngineClient:
    """The engine's RPCs; create inside the event loop that will use it (grpc.aio binds to it)."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    @property
    def address(self) -> str:
        return self.upstream.address

    async def model_info(self) -> engine_pb2.GetModelInfoResponse:
        return await self.upstream.unary(engine_pb2_grpc.EngineServiceStub, "GetModelInfo", engine_pb2.GetModelInfoRequest())

    async def count_tokens(self, request: engine_pb2.CountTokensRequest) -> engine_pb2.CountTokensResponse:
        return await self.upstream.unary(engine_pb2_grpc.EngineServiceStub, "CountTokens", request)

    def generate(self, request: engine_pb2.GenerateRequest, observer: StreamObserver | None = None) -> GenerateStream:
        stream = self.upstream.stream(engine_pb2_grpc.EngineServiceStub, "Generate", request)
        return GenerateStream(stream, self.upstream, observer)

    async def close(self) -> None:
        await self.upstream.close()
