"""Rolling topic summaries: after a turn, the engine folds the turns that left the recent
window into the topic's summary, and memory stores it (memory.Summarize).

This runs in the background, after the turn's done event, at the engine's lowest
priority, so a summary never delays an answer. One refresh per topic runs at a
time; a refresh that loses a race is refused by memory (it keeps the summary
that covers more turns), so concurrent routers never move a summary backwards.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import aclosing

from quartet.services.common.errors import QuartetError
from quartet.services.router.agents import Agent, MemoryPolicy, Priority
from quartet.services.router.domain import EngineRequest, Finished, TextDelta
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.prompting import summary_messages

log = logging.getLogger(__name__)

#: Most summary rounds one refresh runs (each folds at most k turns), so a long backlog
#: (a topic switched to this policy late) catches up over a few turns, not in one burst.
MAX_ROUNDS = 4


class Summarizer:
    """Schedules refreshes; ``close`` cancels those still running."""

    def __init__(self, engine: EngineClient, memory: MemoryClient) -> None:
        self.engine = engine
        self.memory = memory
        self._running: dict[str, asyncio.Task[None]] = {}

    def schedule(self, agent: Agent, topic_id: str) -> None:
        if agent.summarizing is None or not topic_id or topic_id in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._refresh(agent, topic_id), name=f"summarize-{topic_id}")
        self._running[topic_id] = task
        task.add_done_callback(lambda _: self._running.pop(topic_id, None))

    async def _refresh(self, agent: Agent, topic_id: str) -> None:
        try:
            for _ in range(MAX_ROUNDS):
                if not await self._round(agent, topic_id):
                    return
        except QuartetError as error:
            # The turn itself succeeded; a summary can wait for the next turn.
            log.warning("summary refresh failed", extra={"agent": agent.name, "topic_id": topic_id, "error": error.message})

    async def _round(self, agent: Agent, topic_id: str) -> bool:
        """Fold one batch into the summary; whether it stored one."""
        assert agent.summarizing is not None
        context = await self.memory.get_context(
            MemoryPolicy.TOPIC_SUMMARY, session_id="", topic_id=topic_id, k=agent.memory_k, token_budget=0
        )
        if len(context.unsummarized) < agent.summarizing.after_turns:
            return False
        previous = context.summary.content if context.summary else ""
        request = EngineRequest(
            request_id=f"summary-{uuid.uuid4().hex}",
            priority=Priority.DEFAULT,  # below every agent's own turns
            max_tokens=agent.summarizing.max_tokens,
            temperature=0.0,
            messages=summary_messages(agent.summarizing.prompt, previous, context.unsummarized),
        )
        pieces: list[str] = []
        finished: Finished | None = None
        async with aclosing(self.engine.generate(request)) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                else:
                    finished = event
        text = "".join(pieces).strip()
        if finished is None or finished.finish_reason not in ("stop", "length") or not text:
            return False
        counted = await self.engine.count_tokens(text=text)
        stored = await self.memory.summarize(topic_id, text, counted.num_tokens, context.unsummarized[-1].turn_id)
        log.info(
            "summary refreshed",
            extra={"agent": agent.name, "topic_id": topic_id, "stored": stored, "num_turns": len(context.unsummarized)},
        )
        return stored

    async def wait_idle(self) -> None:
        """Wait for the refreshes running now (tests and graceful shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*list(self._running.values()), return_exceptions=True)
