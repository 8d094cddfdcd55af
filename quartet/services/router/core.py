"""The router core: checks requests, picks the agent, and runs Route or a topic turn."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

from quartet.services.common.errors import InvalidArgument, require
from quartet.services.router.agents import Agent, AgentKind, AgentRegistry, MemoryPolicy
from quartet.services.router.domain import Decision, RouteInput, RunEvent, RunInput
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.routing import decide
from quartet.services.router.topic_turn import TopicTurn

DEFAULT_MAX_INPUT_CHARS = 16_000
#: Run's memory_mode values: the agent's own policy ("" or "agent"), or none for one turn.
MEMORY_MODES = ("", "agent", "none")


def new_request_id() -> str:
    return f"router-{uuid.uuid4().hex}"


class RouterCore:
    """Holds the agents and the engine and memory clients; build it inside a running loop."""

    def __init__(
        self,
        agents: AgentRegistry,
        engine: EngineClient,
        memory: MemoryClient,
        *,
        max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
    ) -> None:
        self.agents = agents
        self.engine = engine
        self.memory = memory
        self.max_input_chars = max_input_chars
        self._topic_turn = TopicTurn(engine, memory)

    def _check_input(self, text: str) -> None:
        require(bool(text.strip()), "input is required", field="input")
        require(
            len(text) <= self.max_input_chars,
            f"input is {len(text)} characters; the limit is {self.max_input_chars}",
            field="input",
        )

    def _agent(self, name: str, kind: AgentKind) -> Agent:
        require(bool(name), "agent is required", field="agent")
        agent = self.agents.get(name)  # NotFound names the configured agents
        if agent.kind is not kind:
            hint = "call Route for its decision" if agent.kind is AgentKind.ROUTER else "call Run for a turn"
            raise InvalidArgument(f"agent {name!r} is a {agent.kind.value} agent; {hint}", field="agent")
        return agent

    async def route(self, request: RouteInput) -> Decision:
        agent = self._agent(request.agent, AgentKind.ROUTER)
        self._check_input(request.input)
        return await decide(self.engine, agent, request.input, request.request_id or new_request_id())

    def run(self, request: RunInput) -> AsyncIterator[RunEvent]:
        """Token events, then one done or error event. Request errors raise before the first event."""
        agent = self._agent(request.agent, AgentKind.TOPIC)
        self._check_input(request.input)
        require(
            request.memory_mode in MEMORY_MODES,
            f"memory_mode is {request.memory_mode!r}; use one of {', '.join(repr(m) for m in MEMORY_MODES)}",
            field="memory_mode",
        )
        if request.memory_mode == "none":
            agent = replace(agent, memory_policy=MemoryPolicy.NONE, summarizing=None)
        if agent.memory_policy is not MemoryPolicy.NONE:
            require(
                bool(request.session_id),
                f"session_id is required: agent {agent.name!r} remembers turns per session ({agent.memory_policy.value})",
                field="session_id",
            )
        if agent.memory_policy.needs_topic:
            require(bool(request.topic_id), f"topic_id is required: agent {agent.name!r} remembers turns per topic", field="topic_id")
        return self._topic_turn.run(agent, request, request.request_id or new_request_id())

    def list_agents(self) -> list[Agent]:
        return list(self.agents)

    async def close(self) -> None:
        await self._topic_turn.summarizer.close()
        await self.engine.close()
        await self.memory.close()
