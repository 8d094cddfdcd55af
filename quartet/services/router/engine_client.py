"""The router's client of the engine: Generate as a stream of domain events, CountTokens.

Failures become typed errors (quartet.services.router.upstream). Leaving the ``generate``
iterator early (the router's own client went away) cancels the engine call, which
aborts the sequence in the engine. Every call has a deadline and never waits for a
down engine (``wait_for_ready=False``); the channel reconnects within about a second of the
engine coming back (``common.channels.ServiceChannel``, as the gateway's clients do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.channels import ServiceChannel
from quartet.services.router import convert
from quartet.services.router.domain import EngineRequest, Finished, Message, TextDelta, TokenCount
from quartet.services.router.upstream import from_code_name, from_rpc_error


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
        self._channel = ServiceChannel("engine", address, connect_timeout_seconds=connect_timeout_seconds, drain_seconds=5.0)
        self._rpc_timeout = rpc_timeout_seconds
        self._generate_timeout = generate_timeout_seconds

    def _failed(self, channel: grpc.aio.Channel, error: grpc.aio.AioRpcError) -> Exception:
        self._channel.after_failure(channel, error)
        return from_rpc_error("engine", self.address, error)

    async def generate(self, request: EngineRequest) -> AsyncIterator[TextDelta | Finished]:
        """Text deltas, then one Finished; raises a typed error if the engine fails."""
        channel = self._channel.get()
        call = engine_pb2_grpc.EngineServiceStub(channel).Generate(
            convert.generate_request_to_pb(request), timeout=self._generate_timeout, wait_for_ready=False
        )
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
            raise self._failed(channel, error) from None
        finally:
            # A no-op once the call is done; otherwise (the consumer stopped early) it aborts the request.
            call.cancel()

    async def count_tokens(self, messages: tuple[Message, ...] = (), text: str = "") -> TokenCount:
        request = convert.count_tokens_request_to_pb(messages, text)
        channel = self._channel.get()
        try:
            response = await engine_pb2_grpc.EngineServiceStub(channel).CountTokens(
                request, timeout=self._rpc_timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as error:
            raise self._failed(channel, error) from None
        return TokenCount(num_tokens=response.num_tokens, context_length=response.context_length)

    async def close(self) -> None:
        await self._channel.close()
