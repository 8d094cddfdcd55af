"""The router's client of the memory service: read a context, store a finished turn and summaries.

Every call has a deadline and never waits for a down memory service; the channel reconnects
soon after it is back (``common.channels.ServiceChannel``).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf.message import Message
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from quartet.services.common.channels import ServiceChannel
from quartet.services.router import convert
from quartet.services.router.agents import MemoryPolicy
from quartet.services.router.domain import MemoryContext, Message
from quartet.services.router.upstream import from_rpc_error


class MemoryClient:
    """Create inside a running event loop (grpc.aio channels bind to it)."""

    def __init__(self, address: str, *, connect_timeout_seconds: float = 1.0, rpc_timeout_seconds: float = 30.0) -> None:
        self.address = address
        self._channel = ServiceChannel("memory", address, connect_timeout_seconds=connect_timeout_seconds, drain_seconds=5.0)
        self._rpc_timeout = rpc_timeout_seconds

    async def _call(self, method: str, request: Message) -> Message:
        """One unary call with the deadline; a typed error (quartet.services.router.upstream) on failure."""
        channel = self._channel.get()
        try:
            return await getattr(memory_pb2_grpc.MemoryServiceStub(channel), method)(
                request, timeout=self._rpc_timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as error:
            self._channel.after_failure(channel, error)
            raise from_rpc_error("memory", self.address, error) from None

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
        await self._channel.close()
