"""The memory core: validation and context selection over a Store; no gRPC here."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from services.common.errors import NotFound, require
from services.memory.limits import Limits, check_id, check_turns, resolve_k
from services.memory.responses import ResponseRecord, check_record
from services.memory.store import Store
from services.memory.turns import ContextQuery, Policy, TopicInfo, Turn

log = logging.getLogger(__name__)

# A turn stored without a count still costs tokens; assume a pessimistic ~3 bytes per
# token (English BPE averages about 4) so an uncounted turn never sneaks past a budget.
_BYTES_PER_TOKEN_ESTIMATE = 3


def turn_tokens(turn: Turn) -> int:
    """The stored count, or a conservative estimate when the caller did not count."""
    if turn.num_tokens > 0:
        return turn.num_tokens
    return math.ceil(len(turn.content.encode("utf-8")) / _BYTES_PER_TOKEN_ESTIMATE)


def fit_budget(turns: Sequence[Turn], token_budget: int) -> list[Turn]:
    """The newest turns whose tokens fit the budget, oldest first; 0 means no limit.

    Dropping stops at the first turn that does not fit: a context with a hole in
    the middle would misrepresent the conversation.
    """
    if token_budget <= 0:
        return list(turns)
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        used += turn_tokens(turn)
        if used > token_budget:
            break
        kept.append(turn)
    kept.reverse()
    return kept


class MemoryCore:
    """Checks requests against ``limits`` and carries them out on ``store``."""

    def __init__(self, store: Store, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()

    async def append_turns(self, session_id: str, topic_id: str, turns: Sequence[Turn]) -> int:
        check_id(session_id, "session_id", required=True)
        check_id(topic_id, "topic_id", required=False)
        check_turns(turns, self.limits)
        num_turns = await self.store.append(session_id, topic_id, turns, created_at=time.time())
        log.info("appended turns", extra={"session_id": session_id, "topic_id": topic_id, "num_appended": len(turns)})
        return num_turns

    async def get_context(self, query: ContextQuery) -> list[Turn]:
        check_id(query.session_id, "session_id", required=query.policy is Policy.SESSION_WINDOW)
        check_id(query.topic_id, "topic_id", required=query.policy is Policy.TOPIC_WINDOW)
        k = resolve_k(query.k, self.limits)
        if query.policy is Policy.NONE:
            return []
        if query.policy is Policy.SESSION_WINDOW:
            turns = await self.store.recent_in_session(query.session_id, k)
        else:
            turns = await self.store.recent_in_topic(query.topic_id, k)
        return fit_budget(turns, query.token_budget)

    async def list_topics(self, session_id: str) -> list[TopicInfo]:
        check_id(session_id, "session_id", required=False)
        return await self.store.list_topics(session_id)

    async def forget(self, session_id: str, topic_id: str) -> int:
        require(bool(session_id or topic_id), "give session_id, topic_id or both", field="session_id")
        check_id(session_id, "session_id", required=False)
        check_id(topic_id, "topic_id", required=False)
        num_deleted = await self.store.forget(session_id, topic_id)
        log.info("forgot turns", extra={"session_id": session_id, "topic_id": topic_id, "num_deleted": num_deleted})
        return num_deleted

    async def put_response(self, record: ResponseRecord) -> float:
        check_record(record, self.limits)
        created_at = time.time()
        await self.store.put_response(record, created_at)
        log.info("stored response", extra={"response_id": record.response_id, "num_bytes": len(record.body_json)})
        return created_at

    async def get_response(self, response_id: str) -> ResponseRecord:
        check_id(response_id, "response_id", required=True)
        record = await self.store.get_response(response_id)
        if record is None:
            raise NotFound(f"no stored response has the id '{response_id}'", field="response_id")
        return record

    async def delete_response(self, response_id: str) -> None:
        check_id(response_id, "response_id", required=True)
        if not await self.store.delete_response(response_id):
            raise NotFound(f"no stored response has the id '{response_id}'", field="response_id")
        log.info("deleted response", extra={"response_id": response_id})

    async def close(self) -> None:
        await self.store.close()
