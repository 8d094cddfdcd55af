"""The storage interface the memory core talks to; SQLite and PostgreSQL implement it.

Methods take validated arguments and return domain objects, so each backend
slots in without touching the core or the server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

from quartet.services.memory.responses import ResponseRecord
from quartet.services.memory.turns import Summary, TopicInfo, Turn

#: Which id a scan is scoped to.
Scope = Literal["session", "topic"]


class Store(ABC):
    """Durable turns, ordered by arrival within the whole store."""

    @abstractmethod
    async def append(
        self,
        session_id: str,
        topic_id: str,
        turns: Sequence[Turn],
        created_at: float,
        embeddings: Sequence[bytes | None] | None = None,
    ) -> int:
        """Store turns (with their embedding bytes, when given) durably (on disk when this
        returns); return the count now stored for the session, narrowed to the topic when one is given."""

    @abstractmethod
    async def recent_in_session(self, session_id: str, limit: int) -> list[Turn]:
        """The newest ``limit`` turns of a session, oldest first."""

    @abstractmethod
    async def recent_in_topic(self, topic_id: str, limit: int) -> list[Turn]:
        """The newest ``limit`` turns of a topic across sessions, oldest first."""

    @abstractmethod
    async def topic_turns_between(self, topic_id: str, after_id: int, before_id: int, limit: int) -> list[Turn]:
        """The oldest ``limit`` turns of a topic with ``after_id < turn_id < before_id``, oldest first."""

    @abstractmethod
    async def get_summary(self, topic_id: str) -> Summary | None:
        """The topic's summary, or None."""

    @abstractmethod
    async def put_summary(self, topic_id: str, summary: Summary) -> tuple[bool, Summary]:
        """Store ``summary`` unless the stored one covers as many turns (``through_turn_id``);
        atomically, so concurrent refreshes never move a summary backwards. Returns whether it
        was stored and the summary now in force."""

    @abstractmethod
    async def embedded(self, scope: Scope, scope_id: str, limit: int) -> list[tuple[Turn, bytes]]:
        """The newest ``limit`` turns of a session or topic that have an embedding, with it."""

    @abstractmethod
    async def unembedded(self, scope: Scope, scope_id: str, limit: int) -> list[Turn]:
        """The newest ``limit`` turns of a session or topic stored without an embedding."""

    @abstractmethod
    async def set_embeddings(self, pairs: Sequence[tuple[int, bytes]]) -> None:
        """Attach embedding bytes to stored turns, by turn id."""

    @abstractmethod
    async def list_topics(self, session_id: str) -> list[TopicInfo]:
        """Topics (of one session, or all when ``session_id`` is empty), most recently active first."""

    @abstractmethod
    async def forget(self, session_id: str, topic_id: str) -> int:
        """Delete a session's turns, a topic's, or a topic's within a session; return how many.
        The summaries of the topics those turns belonged to go too (they may quote them)."""

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
