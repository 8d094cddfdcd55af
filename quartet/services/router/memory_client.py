"""The router's client of the memory service: read a context, store a finished turn and summaries.

Deadlines, reconnection and the typed errors of a failure (its field included) are
``common.rpc.Upstream``'s, as for every Quartet client.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import message as pb_message
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from quartet.services.common.rpc import Deadlines, ServiceChannel, Upstream
from quartet.services.router import convert
from quartet.services.router.agents import MemoryPolicy
from quartet.services.router.domain import MemoryContext, Message


class MemoryClient:
    """Create inside a running event loop (grpc.aio channels bind to it)."""

    def __init__(self, address: str, *, connect_timeout_seconds: float = 1.0, rpc_timeout_seconds: float = 30.0) -> None:
        self.address = address
        channel = ServiceChannel("memory", address, connect_timeout_seconds=connect_timeout_seconds, drain_seconds=5.0)
        # Memory has no streams; its unary deadline is the only one used.
        self._upstream = Upstream(channel, Deadlines(rpc_seconds=rpc_timeout_seconds, stream_seconds=rpc_timeout_seconds))

    async def _call(self, method: str, request: pb_message.Message) -> pb_message.Message:
        return await self._upstream.unary(memory_pb2_grpc.MemoryServiceStub, method, request)

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
        response = await self._call("GetContext", request)
        return convert.context_from_pb(response)

    async def summarize(self, topic_id: str, content: str, num_tokens: int, through_turn_id: int) -> bool:
        """Store a topic's new summary; False when memory already holds one that covers as much."""
        request = memory_pb2.SummarizeRequest(
            topic_id=topic_id, content=content, num_tokens=num_tokens, through_turn_id=through_turn_id
        )
        response = await self._call("Summarize", request)
        return response.stored

    async def append_turns(self, session_id: str, topic_id: str, turns: Sequence[Message]) -> int:
        request = memory_pb2.AppendTurnsRequest(
            session_id=session_id, topic_id=topic_id, turns=[convert.message_to_turn_pb(t) for t in turns]
        )
        response = await self._call("AppendTurns", request)
        return response.num_turns

    async def close(self) -> None:
        await self._upstream.close()
