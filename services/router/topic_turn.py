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

from services.common.errors import InvalidArgument, QuartetError, Unavailable
from services.router.agents import Agent, MemoryPolicy
from services.router.domain import (
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
from services.router.engine_client import EngineClient
from services.router.memory_client import MemoryClient
from services.router.prompting import topic_messages

log = logging.getLogger(__name__)

# The chat template wraps each message in a few tokens (ChatML: <|im_start|>role\n ... <|im_end|>\n);
# stored turn sizes count content only, so the budget sets this much aside per remembered turn.
TURN_OVERHEAD_TOKENS = 8
SAFETY_MARGIN_TOKENS = 16


def context_budget(*, context_length: int, max_tokens: int, base_prompt_tokens: int, k: int) -> int:
    """Tokens the remembered turns may take so that prompt + answer fit the context.

    ``base_prompt_tokens`` is the prompt without memory (system + new message).
    Raises InvalidArgument when even that prompt leaves no room for ``max_tokens``.
    """
    if base_prompt_tokens + max_tokens > context_length:
        raise InvalidArgument(
            f"the message takes {base_prompt_tokens} prompt tokens; with max_tokens {max_tokens} that exceeds "
            f"the model's context of {context_length}; shorten the input or lower max_tokens",
            field="input",
        )
    return context_length - max_tokens - base_prompt_tokens - k * TURN_OVERHEAD_TOKENS - SAFETY_MARGIN_TOKENS


class TopicTurn:
    """The steps of one Run, sharing the clients; create one per process, call ``run`` per request."""

    def __init__(self, engine: EngineClient, memory: MemoryClient) -> None:
        self.engine = engine
        self.memory = memory

    async def _context(self, agent: Agent, run: RunInput, base_prompt_tokens: int, context_length: int, max_tokens: int) -> list[Message]:
        if agent.memory_policy is MemoryPolicy.NONE:
            return []
        budget = context_budget(
            context_length=context_length, max_tokens=max_tokens, base_prompt_tokens=base_prompt_tokens, k=agent.memory_k
        )
        if budget <= 0:
            return []  # no room for memory (and 0 would mean "unlimited" to the memory service)
        return await self.memory.get_context(
            agent.memory_policy, session_id=run.session_id, topic_id=run.topic_id, k=agent.memory_k, token_budget=budget
        )

    async def run(self, agent: Agent, run: RunInput, request_id: str) -> AsyncIterator[RunEvent]:
        started = time.perf_counter()
        max_tokens = run.max_tokens or agent.generation.max_tokens
        base, user = await asyncio.gather(
            self.engine.count_tokens(messages=topic_messages(agent, (), run.input)),
            self.engine.count_tokens(text=run.input),
        )
        context = await self._context(agent, run, base.num_tokens, base.context_length, max_tokens)
        request = EngineRequest(
            request_id=request_id,
            priority=agent.priority,
            max_tokens=max_tokens,
            temperature=agent.generation.temperature,
            messages=topic_messages(agent, context, run.input),
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
        log.info(
            "ran turn",
            extra={
                "agent": agent.name,
                "request_id": request_id,
                "finish_reason": finished.finish_reason,
                "num_context_turns": len(context),
                "prompt_tokens": finished.prompt_tokens,
                "completion_tokens": finished.completion_tokens,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        yield DoneEvent(finished.finish_reason, finished.prompt_tokens, finished.completion_tokens)
