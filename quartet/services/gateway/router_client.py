"""The router's RPCs as the gateway uses them: the agents (cached briefly) and agent turns.

Agents appear to OpenAI clients as models named ``agent/<name>``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from quartet.router.v1 import router_pb2, router_pb2_grpc

from quartet.services.common.errors import Unavailable
from quartet.services.common.rpc import Upstream
from quartet.services.gateway.errors import ModelNotFound

AGENT_PREFIX = "agent/"


def agent_name(model: str) -> str | None:
    """The agent a model id names (``agent/chat`` -> ``chat``), or None for an engine model."""
    return model[len(AGENT_PREFIX):] if model.startswith(AGENT_PREFIX) else None


@dataclass(frozen=True, slots=True)
class AgentCard:
    name: str
    description: str
    kind: str
    memory_policy: str

    @property
    def model_id(self) -> str:
        return AGENT_PREFIX + self.name


class RouterClient:
    def __init__(self, upstream: Upstream, *, cache_seconds: float) -> None:
        self._upstream = upstream
        self._cache_seconds = cache_seconds
        self._agents: list[AgentCard] = []
        self._fetched_at = float("-inf")

    @property
    def enabled(self) -> bool:
        return self._upstream.enabled

    @property
    def address(self) -> str:
        return self._upstream.address

    async def agents(self, *, fresh: bool = False) -> list[AgentCard]:
        """The configured agents; Unavailable when the router is off or down."""
        if not self.enabled:
            raise Unavailable("agents are off: the gateway has no router (set ROUTER_ADDRESS)")
        if not fresh and time.monotonic() - self._fetched_at <= self._cache_seconds:
            return self._agents
        reply = await self._upstream.unary(router_pb2_grpc.RouterServiceStub, "ListAgents", router_pb2.ListAgentsRequest())
        self._agents = [AgentCard(a.name, a.description, a.kind, a.memory_policy) for a in reply.agents]
        self._fetched_at = time.monotonic()
        return self._agents

    async def topic_agent(self, name: str) -> AgentCard:
        """The topic agent called ``name``; ModelNotFound (naming those there are) otherwise."""
        for fresh in (False, True):
            for card in await self.agents(fresh=fresh):
                if card.name == name and card.kind == "topic":
                    return card
        known = ", ".join(c.model_id for c in self._agents if c.kind == "topic") or "none"
        raise ModelNotFound(f"the model '{AGENT_PREFIX}{name}' does not exist; agents: {known}", field="model")

    async def run(self, request: router_pb2.RunRequest) -> AsyncIterator[router_pb2.RunResponse]:
        """The turn's events; a failure before or during the stream raises a typed error.
        Leaving the iterator early cancels the call (and so the engine's work)."""
        stream = self._upstream.stream(router_pb2_grpc.RouterServiceStub, "Run", request)
        try:
            async for event in stream:
                yield event
        finally:
            stream.cancel()
