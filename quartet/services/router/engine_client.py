"""The router's view of the engine: Generate as a stream of domain events, CountTokens.

The calls themselves are ``common.engine_client.EngineClient``'s, the gateway's too, so
deadlines, reconnection and the status (and field) of a failure are the same for both;
this adapter only converts protos to the router's domain types. Leaving the
``generate`` iterator early (the router's own client went away) cancels the engine
call, which aborts the sequence in the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quartet.services.common.engine_client import EngineClient as EngineRpc
from quartet.services.common.rpc import Deadlines, ServiceChannel, Upstream
from quartet.services.router import convert
from quartet.services.router.domain import EngineRequest, Finished, Message, TextDelta, TokenCount


class EngineClient:
    """Create inside a running event loop (grpc.aio channels bind to it)."""

    def __init__(
        self,
        address: str,
        *,
        connect_timeout_seconds: float = 1.0,
        rpc_timeout_seconds: float = 30.0,
        generate_timeout_seconds: float = 600.0,
    ) -> None:
        self.address = address
        channel = ServiceChannel("engine", address, connect_timeout_seconds=connect_timeout_seconds, drain_seconds=5.0)
        deadlines = Deadlines(rpc_seconds=rpc_timeout_seconds, stream_seconds=generate_timeout_seconds)
        self._rpc = EngineRpc(Upstream(channel, deadlines))

    async def generate(self, request: EngineRequest) -> AsyncIterator[TextDelta | Finished]:
        """Text deltas, then one Finished; raises a typed error if the engine fails."""
        stream = self._rpc.generate(convert.generate_request_to_pb(request))
        try:
            async for response in stream.events():
                event = response.WhichOneof("event")
                if event == "chunk":
                    if response.chunk.text:
                        yield TextDelta(response.chunk.text)
                elif event == "complete":
                    yield convert.finished_from_pb(response.complete)
                    return
        finally:
            # Now, not when the inner generator is collected: closing this one must abort the engine's work.
            stream.cancel()

    async def count_tokens(self, messages: tuple[Message, ...] = (), text: str = "") -> TokenCount:
        response = await self._rpc.count_tokens(convert.count_tokens_request_to_pb(messages, text))
        return TokenCount(num_tokens=response.num_tokens, context_length=response.context_length)

    async def close(self) -> None:
        await self._rpc.close()
