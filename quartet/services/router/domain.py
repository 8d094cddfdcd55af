"""What the router's core takes and gives: routing and agent-turn requests, results and events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quartet.services.router.agents import Priority

DEFAULT_ROUTER_AGENT = "router"


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``num_tokens`` is its content's size when known (0 = unknown);
    ``turn_id`` is its id in memory, for a remembered turn."""

    role: str
    content: str
    num_tokens: int = 0
    turn_id: int = 0


@dataclass(frozen=True, slots=True)
class SummaryNote:
    """A topic's rolling summary, covering every turn up to ``through_turn_id``."""

    content: str
    num_tokens: int
    through_turn_id: int


@dataclass(frozen=True, slots=True)
class MemoryContext:
    """What memory returned for a turn: remembered (or retrieved) turns, oldest first, the
    summary, and the turns waiting to be summarized (topic_summary only)."""

    turns: tuple[Message, ...] = ()
    summary: SummaryNote | None = None
    unsummarized: tuple[Message, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteInput:
    input: str
    agent: str = DEFAULT_ROUTER_AGENT
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision that fits the agent's schema; ``json`` is its compact text."""

    agent: str
    value: dict[str, Any]
    json: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class RunInput:
    agent: str
    input: str
    session_id: str = ""
    topic_id: str = ""
    request_id: str = ""
    max_tokens: int = 0  # 0: the agent's default
    memory_mode: str = ""  # "" / "agent": the agent's policy; "none": no memory this turn


@dataclass(frozen=True, slots=True)
class TokenEvent:
    text: str


@dataclass(frozen=True, slots=True)
class DoneEvent:
    finish_reason: str  # a common.finish_reasons name: stop, length or abort
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    message: str


RunEvent = TokenEvent | DoneEvent | ErrorEvent


# --- what the router asks of the engine -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One generation: either chat ``messages`` (the engine applies the chat template) or raw ``text``."""

    request_id: str
    priority: Priority
    max_tokens: int
    temperature: float
    messages: tuple[Message, ...] = ()
    text: str = ""
    stop: tuple[str, ...] = ()
    top_p: float = 1.0
    json_schema: str = ""  # constrain the output to this JSON Schema (empty: no constraint)
    grammar: str = ""  # or to this GBNF grammar


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: str  # a common.finish_reasons name: stop, length, tool_calls, abort, error
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class TokenCount:
    num_tokens: int
    context_length: int
