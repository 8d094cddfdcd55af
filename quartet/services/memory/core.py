"""The memory core: validation and context selection over a Store; no gRPC here."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from quartet.services.common.errors import NotFound, require
from quartet.services.memory.budget import fit_budget, fit_with_summary, turn_tokens  # noqa: F401 (re-exported)
from quartet.services.memory.embedder import Embedder
from quartet.services.memory.limits import Limits, check_id, check_turns, resolve_k
from quartet.services.memory.responses import ResponseRecord, check_record
from quartet.services.memory.retrieval import Retriever
from quartet.services.memory.store import Store
from quartet.services.memory.turns import Context, ContextQuery, Policy, SearchHit, Summary, TopicInfo, Turn

log = logging.getLogger(__name__)

# No stored turn has an id this high; "before the window" of an empty window is everything.
_AFTER_EVERY_TURN = 2**62


class MemoryCore:
    """Checks requests against ``limits`` and carries them out on ``store``; ``embedder``
    (optional) turns on retrieval."""

    def __init__(self, store: Store, limits: Limits | None = None, embedder: Embedder | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.retriever = Retriever(store, embedder)

    async def append_turns(self, session_id: str, topic_id: str, turns: Sequence[Turn]) -> int:
        check_id(session_id, "session_id", required=True)
        check_id(topic_id, "topic_id", required=False)
        check_turns(turns, self.limits)
        embeddings = await self.retriever.embeddings_for(turns)
        num_turns = await self.store.append(session_id, topic_id, turns, created_at=time.time(), embeddings=embeddings)
        log.info("appended turns", extra={"session_id": session_id, "topic_id": topic_id, "num_appended": len(turns)})
        return num_turns

    async def get_context(self, query: ContextQuery) -> Context:
        policy = query.policy
        topic_required = policy in (Policy.TOPIC_WINDOW, Policy.TOPIC_SUMMARY)
        check_id(query.session_id, "session_id", required=policy is Policy.SESSION_WINDOW)
        check_id(query.topic_id, "topic_id", required=topic_required)
        k = resolve_k(query.k, self.limits)
        if policy is Policy.NONE:
            return Context(turns=[])
        if policy is Policy.SESSION_WINDOW:
            return Context(turns=fit_budget(await self.store.recent_in_session(query.session_id, k), query.token_budget))
        if policy is Policy.TOPIC_WINDOW:
            return Context(turns=fit_budget(await self.store.recent_in_topic(query.topic_id, k), query.token_budget))
        if policy is Policy.TOPIC_SUMMARY:
            return await self._topic_summary(query.topic_id, k, query.token_budget)
        hits = await self.search(query.query, query.topic_id, query.session_id, k)
        # Retrieved turns go to the model in the order they happened; the budget drops the oldest.
        chronological = sorted((hit.turn for hit in hits), key=lambda t: t.turn_id)
        return Context(turns=fit_budget(chronological, query.token_budget))

    async def _topic_summary(self, topic_id: str, k: int, token_budget: int) -> Context:
        summary = await self.store.get_summary(topic_id)
        covered = summary.through_turn_id if summary else 0
        # Turns the summary already covers would say the same thing twice.
        recent = [t for t in await self.store.recent_in_topic(topic_id, k) if t.turn_id > covered]
        window_start = recent[0].turn_id if recent else _AFTER_EVERY_TURN
        unsummarized = await self.store.topic_turns_between(topic_id, covered, window_start, k)
        return Context(turns=fit_with_summary(recent, summary, token_budget), summary=summary, unsummarized=unsummarized)

    async def summarize(self, topic_id: str, content: str, num_tokens: int, through_turn_id: int) -> tuple[bool, Summary]:
        check_id(topic_id, "topic_id", required=True)
        require(bool(content.strip()), "content is required", field="content")
        size = len(content.encode("utf-8"))
        require(
            size <= self.limits.max_content_bytes,
            f"content is {size} bytes; the limit is {self.limits.max_content_bytes}",
            field="content",
        )
        require(through_turn_id > 0, "through_turn_id is required: the newest turn the summary covers", field="through_turn_id")
        summary = Summary(content=content, num_tokens=num_tokens, through_turn_id=through_turn_id, created_at=time.time())
        stored, current = await self.store.put_summary(topic_id, summary)
        log.info("summary", extra={"topic_id": topic_id, "stored": stored, "through_turn_id": current.through_turn_id})
        return stored, current

    async def search(self, query: str, topic_id: str, session_id: str, k: int) -> list[SearchHit]:
        require(bool(query.strip()), "query is required", field="query")
        require(
            len(query.encode("utf-8")) <= self.limits.max_content_bytes,
            f"query is longer than {self.limits.max_content_bytes} bytes",
            field="query",
        )
        check_id(topic_id, "topic_id", required=False)
        check_id(session_id, "session_id", required=not topic_id)
        k = resolve_k(k, self.limits)
        if topic_id:
            return await self.retriever.search(query, "topic", topic_id, k)
        return await self.retriever.search(query, "session", session_id, k)

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
        self.retriever.close()
        await self.store.close()
