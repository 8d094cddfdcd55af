"""Agents as the router runs them: resolved, validated, immutable."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from quartet.services.common.errors import NotFound


class AgentKind(enum.Enum):
    ROUTER = "router"  # stateless, one-shot, answers one JSON object
    TOPIC = "topic"  # conversational, with memory


class Priority(enum.Enum):
    """The engine queue slot an agent's requests take (engine.v1.Priority)."""

    DEFAULT = "default"
    TOPIC = "topic"
    ROUTER = "router"


class MemoryPolicy(enum.Enum):
    """Which past turns a topic agent sees (memory.v1.MemoryPolicy)."""

    NONE = "none"
    SESSION_WINDOW = "session_window"
    TOPIC_WINDOW = "topic_window"
    TOPIC_SUMMARY = "topic_summary"  # the topic's rolling summary + its last k turns
    RETRIEVAL = "retrieval"  # the k past turns most similar to the new message

    @property
    def needs_topic(self) -> bool:
        return self in (MemoryPolicy.TOPIC_WINDOW, MemoryPolicy.TOPIC_SUMMARY)


@dataclass(frozen=True, slots=True)
class Generation:
    max_tokens: int
    temperature: float
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True, slots=True)
class Summarizing:
    """How a topic_summary agent refreshes its summary: once ``after_turns`` turns have left
    the recent window unsummarized, the engine folds them into the summary with ``prompt``."""

    prompt: str
    after_turns: int = 4
    max_tokens: int = 96


@dataclass(frozen=True, slots=True)
class Example:
    """A worked routing example shown to the model: input text and the decision it should give."""

    input: str
    output: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    kind: AgentKind
    description: str
    prompt_id: str
    system_prompt: str
    priority: Priority
    generation: Generation
    # Router agents only.
    schema_id: str = ""
    schema: Mapping[str, Any] = field(default_factory=dict)
    grammar_id: str = ""  # a GBNF grammar that constrains the output (instead of the schema)
    grammar: str = ""
    examples: tuple[Example, ...] = ()
    output_prefix: str = ""  # the start of every decision, given to the model as its first words
    # Topic agents only.
    memory_policy: MemoryPolicy = MemoryPolicy.NONE
    memory_k: int = 0
    summarizing: Summarizing | None = None  # topic_summary only


class AgentRegistry:
    """The configured agents, in configuration order."""

    def __init__(self, agents: list[Agent]) -> None:
        self._agents: Mapping[str, Agent] = MappingProxyType({a.name: a for a in agents})
        if len(self._agents) != len(agents):
            raise ValueError("agent names must be unique")

    def get(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            known = ", ".join(self._agents) or "none"
            raise NotFound(f"no agent named {name!r}; configured agents: {known}") from None

    def __iter__(self) -> Iterator[Agent]:
        return iter(self._agents.values())

    def __len__(self) -> int:
        return len(self._agents)
