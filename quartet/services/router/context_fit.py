"""The prompt of a topic turn: memory's context, fitted to the model's window.

DESIGN.md's budget: system + summary + retrieved + recent turns must fit
``n_ctx - max_tokens - margin``. Memory gets a token budget computed from the
engine's count of the prompt without memory, and fills it by stored turn sizes;
then the assembled prompt is counted again with CountTokens (the chat template's
own tokens included), and while it does not fit the oldest remembered turn goes.
The summary stays unless nothing else is left to drop.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from quartet.services.common.errors import InvalidArgument
from quartet.services.router.agents import Agent, MemoryPolicy
from quartet.services.router.domain import MemoryContext, Message
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.prompting import topic_messages

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


async def load_context(
    memory: MemoryClient, agent: Agent, *, session_id: str, topic_id: str, user_input: str, budget: int
) -> MemoryContext:
    """Memory's context for this turn; empty for the none policy or when there is no room."""
    if agent.memory_policy is MemoryPolicy.NONE or budget <= 0:
        return MemoryContext()  # (a budget of 0 would mean "unlimited" to the memory service)
    return await memory.get_context(
        agent.memory_policy,
        session_id=session_id,
        topic_id=topic_id,
        k=agent.memory_k,
        token_budget=budget,
        query=user_input if agent.memory_policy is MemoryPolicy.RETRIEVAL else "",
    )


async def fit_messages(
    engine: EngineClient, agent: Agent, context: MemoryContext, user_input: str, *, context_length: int, max_tokens: int
) -> tuple[tuple[Message, ...], MemoryContext]:
    """The messages to send, counted to fit, and the context they hold after any dropping."""
    limit = context_length - max_tokens - SAFETY_MARGIN_TOKENS
    while True:
        messages = topic_messages(agent, context, user_input)
        if not context.turns and context.summary is None:
            return messages, context  # the bare prompt was checked by context_budget
        counted = (await engine.count_tokens(messages=messages)).num_tokens
        if counted <= limit:
            return messages, context
        if context.turns:
            context = replace(context, turns=context.turns[1:])  # oldest first
        else:
            log.warning("summary dropped: it alone overflows the context", extra={"agent": agent.name})
            context = replace(context, summary=None)
