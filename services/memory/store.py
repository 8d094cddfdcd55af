"""The storage interface the memory core talks to; SQLite implements it today.

Methods take validated arguments and return domain objects, so a second backend
(PostgreSQL, a later issue) slots in without touching the core or the server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from services.memory.responses import ResponseRecord
from services.memory.turns import TopicInfo, Turn


class Store(ABC):
    """Durable turns, ordered by arrival within the whole store."""

    @abstractmethod
    async def append(self, session_id: str, topic_id: str, turns: Sequence[Turn], created_at: float) -> int:
        """Store turns durably (on disk when this returns); return the count now stored for
        the session, narrowed to the topic when one is given."""

    @abstractmethod
    async def recent_in_session(self, session_id: str, limit: int) -> list[Turn]:
        """The newest ``limit`` turns of a session, oldest first."""

    @abstractmethod
    async def recent_in_topic(self, topic_id: str, limit: int) -> list[Turn]:
        """The newest ``limit`` turns of a topic across sessions, oldest first."""

    @abstractmethod
    async def list_topics(self, session_id: str) -> list[TopicInfo]:
        """Topics (of one session, or all when ``session_id`` is empty), most recently active first."""

    @abstractmethod
    async def forget(self, session_id: str, topic_id: str) -> int:
        """Delete a session's turns, a topic's, or a topic's within a session; return how many."""

    @abstractmethod
    async def put_response(self, record: ResponseRecord, created_at: float) -> None:
        """Store (or replace) a response record durably."""

    @abstractmethod
    async def get_response(self, response_id: str) -> ResponseRecord | None:
        """The record, or None when no response has that id."""

    @abstractmethod
    async def delete_response(self, response_id: str) -> bool:
        """Delete the record; whether there was one."""

    @abstractmethod
    async def close(self) -> None:
        """Release the backend; calls after this fail."""
