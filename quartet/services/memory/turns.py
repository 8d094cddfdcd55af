"""The memory service's domain objects: turns, context queries, summaries and topics."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

ROLES = frozenset({"system", "user", "assistant", "tool"})


class Policy(enum.Enum):
    """Which past turns a context holds (mirrors memory.v1.MemoryPolicy)."""

    NONE = "none"
    SESSION_WINDOW = "session_window"
    TOPIC_WINDOW = "topic_window"
    TOPIC_SUMMARY = "topic_summary"
    RETRIEVAL = "retrieval"


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message. ``num_tokens`` 0 means the caller did not count it;
    ``turn_id`` 0 means not stored yet (ids increase with arrival)."""

    role: str
    content: str
    num_tokens: int = 0
    created_at: float = 0.0
    turn_id: int = 0


@dataclass(frozen=True, slots=True)
class ContextQuery:
    """A request for context; ``k`` 0 and ``token_budget`` 0 mean default and unlimited."""

    policy: Policy
    session_id: str = ""
    topic_id: str = ""
    k: int = 0
    token_budget: int = 0
    query: str = ""  # RETRIEVAL: the text to find similar turns for


@dataclass(frozen=True, slots=True)
class Summary:
    """A topic's rolling summary of every turn up to and including ``through_turn_id``."""

    content: str
    num_tokens: int
    through_turn_id: int
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Context:
    """What GetContext returns: the turns that fit, the summary (always kept), and for
    TOPIC_SUMMARY the turns awaiting the next summary (outside the budget)."""

    turns: list[Turn]
    summary: Summary | None = None
    unsummarized: list[Turn] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SearchHit:
    turn: Turn
    score: float  # cosine similarity, higher is closer


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic_id: str
    num_turns: int
    last_active_at: float
