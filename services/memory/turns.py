"""The memory service's domain objects: turns, context queries and topics."""

from __future__ import annotations

import enum
from dataclasses import dataclass

ROLES = frozenset({"system", "user", "assistant", "tool"})


class Policy(enum.Enum):
    """Which past turns a context holds (mirrors memory.v1.MemoryPolicy)."""

    NONE = "none"
    SESSION_WINDOW = "session_window"
    TOPIC_WINDOW = "topic_window"


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message. ``num_tokens`` 0 means the caller did not count it."""

    role: str
    content: str
    num_tokens: int = 0
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ContextQuery:
    """A request for context; ``k`` 0 and ``token_budget`` 0 mean default and unlimited."""

    policy: Policy
    session_id: str = ""
    topic_id: str = ""
    k: int = 0
    token_budget: int = 0


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic_id: str
    num_turns: int
    last_active_at: float
