"""The router's client of the memory service: read a context, store a finished turn."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from services.common.grpc_server import CHANNEL_OPTIONS
from services.router import convert
from services.router.agents import MemoryPolicy
from services.router.domain import Message
from services.router.upstream import from_rpc_error


class MemoryClient:
    """Create inside a running event loop (grpc.aio channels bind to it)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = memory_pb2_grpc.MemoryServiceStub(self._channel)

    async def get_context(
        self, policy: MemoryPolicy, *, session_id: str, topic_id: str, k: int, token_budget: int
    ) -> list[Message]:
        """Past turns, oldest first; ``token_budget`` 0 means no limit."""
        request = memory_pb2.GetContextRequest(
            policy=convert.memory_policy_to_pb(policy),
            session_id=session_id,
            topic_id=topic_id,
            k=k,
            token_budget=token_budget,
        )
        try:
            response = await self._stub.GetContext(request)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error("memory", self.address, error) from None
        return [convert.message_from_turn_pb(turn) for turn in response.turns]

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
