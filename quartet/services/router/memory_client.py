"""The router's client of the memory service: read a context, store a finished turn and summaries."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.router import convert
from quartet.services.router.agents import MemoryPolicy
from quartet.services.router.domain import MemoryContext, Message
from quartet.services.router.upstream import from_rpc_error


class MemoryClient:
    """Create inside a running event loop (grpc.aio channels bind to it)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = memory_pb2_grpc.MemoryServiceStub(self._channel)

    async def get_context(
        self, policy: MemoryPolicy, *, session_id: str, topic_id: str, k: int, token_budget: int, query: str = ""
    ) -> MemoryContext:
        """Past turns (oldest first) and the summary; ``token_budget`` 0 means no limit."""
        request = memory_pb2.GetContextRequest(
            policy=convert.memory_policy_to_pb(policy),
            session_id=session_id,
            topic_id=topic_id,
            k=k,
            token_budget=token_budget,
            query=query,
        )
        try:
            response = await self._stub.GetContext(request)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error("memory", self.address, error) from None
        return convert.context_from_pb(response)

    async def summarize(self, topic_id: str, content: str, num_tokens: int, through_turn_id: int) -> bool:
        """Store a topic's new summary; False when memory already holds one that covers as much."""
        request = memory_pb2.SummarizeRequest(
            topic_id=topic_id, content=content, num_tokens=num_tokens, through_turn_id=through_turn_id
        )
        try:
            response = await self._stub.Summarize(request)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error("memory", self.address, error) from None
        return response.stored

    async def append_turns(self, session_id: str, topic_id: str, turns: Sequence[Message]) -> int:
        request = memory_pb2.AppendTurnsRequest(
            session_id=session_id, topic_id=topic_id, turns=[convert.message_to_turn_pb(t) for t in turns]
        )
        try:
            response = await self._stub.AppendTurns(request)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error("memory", self.address, error) from None
        return response.num_turns

    async def close(self) -> None:
        await self._channel.close()
