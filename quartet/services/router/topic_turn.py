"""Run: one turn of a topic agent, streamed, with memory read before and written after.

The turn is stored only once the engine finished it (stop or length), so a
cancelled or failed turn never leaves half an answer in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from quartet.services.common.errors import QuartetError, Unavailable
from quartet.services.router.agents import Agent, MemoryPolicy
from quartet.services.router.context_fit import (  # noqa: F401 (budget names re-exported for callers and tests)
    SAFETY_MARGIN_TOKENS,
    TURN_OVERHEAD_TOKENS,
    context_budget,
    fit_messages,
    load_context,
)
from quartet.services.router.domain import (
    DoneEvent,
    EngineRequest,
    ErrorEvent,
    Finished,
    Message,
    RunEvent,
    RunInput,
    TextDelta,
    TokenEvent,
)
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.prompting import topic_messages
from quartet.services.router.summarizer import Summarizer

log = logging.getLogger(__name__)


class TopicTurn:
    """The steps of one Run, sharing the clients; create one per process, call ``run`` per request."""

    def __init__(self, engine: EngineClient, memory: MemoryClient) -> None:
        self.engine = engine
        self.memory = memory
        self.summarizer = Summarizer(engine, memory)

    async def run(self, agent: Agent, run: RunInput, request_id: str) -> AsyncIterator[RunEvent]:
        started = time.perf_counter()
        max_tokens = run.max_tokens or agent.generation.max_tokens
        base, user = await asyncio.gather(
            self.engine.count_tokens(messages=topic_messages(agent, (), run.input)),
            self.engine.count_tokens(text=run.input),
        )
        budget = context_budget(
            context_length=base.context_length, max_tokens=max_tokens, base_prompt_tokens=base.num_tokens, k=agent.memory_k
        )
        loaded = await load_context(
            self.memory, agent, session_id=run.session_id, topic_id=run.topic_id, user_input=run.input, budget=budget
        )
        messages, context = await fit_messages(
            self.engine, agent, loaded, run.input, context_length=base.context_length, max_tokens=max_tokens
        )
        request = EngineRequest(
            request_id=request_id,
            priority=agent.priority,
            max_tokens=max_tokens,
            temperature=agent.generation.temperature,
            top_p=agent.generation.top_p,
            messages=messages,
        )
        pieces: list[str] = []
        finished: Finished | None = None
        try:
            async with aclosing(self.engine.generate(request)) as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        pieces.append(event.text)
                        yield TokenEvent(event.text)
                    else:
                        finished = event
            if finished is None:
                raise Unavailable(f"the engine at {self.engine.address} ended the stream without finishing; retry")
        except QuartetError as error:
            if not pieces:
                raise  # nothing streamed yet: the caller gets a precise status instead of an event
            log.warning("turn failed mid-stream", extra={"agent": agent.name, "request_id": request_id, "error": error.message})
            yield ErrorEvent(f"the turn failed after {len(pieces)} text events: {error.message}")
            return

        if finished.finish_reason in ("stop", "length") and agent.memory_policy is not MemoryPolicy.NONE:
            turns = (
                Message("user", run.input, num_tokens=user.num_tokens),
                Message("assistant", "".join(pieces), num_tokens=finished.completion_tokens),
            )
            try:
                await self.memory.append_turns(run.session_id, run.topic_id, turns)
            except QuartetError as error:
                yield ErrorEvent(f"the answer was not saved to memory: {error.message}")
                return
            self.summarizer.schedule(agent, run.topic_id)
        log.info(
            "ran turn",
            extra={
                "agent": agent.name,
                "request_id": request_id,
                "finish_reason": finished.finish_reason,
                "num_context_turns": len(context.turns),
                "has_summary": context.summary is not None,
                "prompt_tokens": finished.prompt_tokens,
                "completion_tokens": finished.completion_tokens,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        yield DoneEvent(finished.finish_reason, finished.prompt_tokens, finished.completion_tokens)
