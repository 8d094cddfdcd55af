"""The router's client of the engine: Generate as a stream of domain events, CountTokens.

Failures become typed errors (quartet.services.router.upstream). Leaving the ``generate``
iterator early (the router's own client went away) cancels the engine call, which
aborts the sequence in the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.router import convert
from quartet.services.router.domain import EngineRequest, Finished, Message, TextDelta, TokenCount
from quartet.services.router.upstream import from_code_name, from_rpc_error


class EngineClient:
    """Create inside a running event loop (grpc.aio channels bind to it)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = engine_pb2_grpc.EngineServiceStub(self._channel)

    async def generate(self, request: EngineRequest) -> AsyncIterator[TextDelta | Finished]:
        """Text deltas, then one Finished; raises a typed error if the engine fails."""
        call = self._stub.Generate(convert.generate_request_to_pb(request))
        try:
            async for response in call:
                event = response.WhichOneof("event")
                if event == "chunk":
                    if response.chunk.text:
                        yield TextDelta(response.chunk.text)
                elif event == "complete":
                    yield convert.finished_from_pb(response.complete)
                    return
                elif event == "error":
                    raise from_code_name("engine", self.address, response.error.code, response.error.message)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error("engine", self.address, error) from None
        finally:
            # A no-op once the call is done; otherwise (the consumer stopped early) it aborts the request.
            call.cancel()

    async def count_tokens(self, messages: tuple[Message, ...] = (), text: str = "") -> TokenCount:
        request = convert.count_tokens_request_to_pb(messages, text)
        try:
            response = await self._stub.CountTokens(request)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error("engine", self.address, error) from None
        return TokenCount(num_tokens=response.num_tokens, context_length=response.context_length)

    async def close(self) -> None:
        await self._channel.close()
