"""How agents' prompts are laid out for the model.

Router agents are prompted as plain text completion, not chat: the system prompt,
worked examples as ``Request:``/``JSON:`` lines, then the new request, ending in
the agent's ``output_prefix`` (for example ``{"Operation": "``) so the model's
first token is already inside the decision. With the bundled 135M model this
routes far more reliably than the same examples as chat turns (measured on 15
requests: 14 right against at most 10 for every chat layout tried).
When the engine constrains the decision with a grammar, the prompt stops after
``JSON: `` instead: the grammar then writes the opening itself, and a prefix in the
prompt would make it write the object twice.
Topic agents are prompted as chat; the engine applies the model's template. A
summary or retrieved turns go into the system message as notes (quoted, not
replayed as turns: retrieved turns are out of order by nature).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from quartet.services.router.agents import Agent, MemoryPolicy
from quartet.services.router.domain import MemoryContext, Message

# The router's decision is one line, so a newline ends it; this keeps the tiny model
# from appending chatter after the object.
ROUTER_STOP = ("\n",)


def example_json(output: Mapping[str, Any]) -> str:
    """An example decision as the prompt shows it (and as ``output_prefix`` must begin)."""
    return json.dumps(output, ensure_ascii=False)


def one_line(text: str) -> str:
    """Collapse whitespace: a request must not open a new ``Request:`` line of its own."""
    return " ".join(text.split())


def router_prompt(agent: Agent, user_input: str, *, constrained: bool = False) -> str:
    """The full text the engine continues. Unconstrained, the decision is ``agent.output_prefix``
    + the output; constrained, the output is the whole decision."""
    parts = [agent.system_prompt, "\n\n"]
    for example in agent.examples:
        parts.append(f"Request: {one_line(example.input)}\nJSON: {example_json(example.output)}\n\n")
    parts.append(f"Request: {one_line(user_input)}\nJSON: {'' if constrained else agent.output_prefix}")
    return "".join(parts).rstrip(" ") if constrained else "".join(parts)


SUMMARY_HEADING = "Summary of the conversation so far:"
RETRIEVED_HEADING = "Earlier messages that may be relevant:"


def system_message(agent: Agent, context: MemoryContext) -> Message:
    parts = [agent.system_prompt]
    if context.summary is not None:
        parts.append(f"{SUMMARY_HEADING}\n{context.summary.content}")
    if agent.memory_policy is MemoryPolicy.RETRIEVAL and context.turns:
        parts.append(RETRIEVED_HEADING + "".join(f"\n- {m.role}: {one_line(m.content)}" for m in context.turns))
    return Message("system", "\n\n".join(parts))


def topic_messages(agent: Agent, context: MemoryContext | Sequence[Message], user_input: str) -> tuple[Message, ...]:
    """System prompt (with summary or retrieved notes), the remembered turns (oldest first),
    then the new user message."""
    if not isinstance(context, MemoryContext):
        context = MemoryContext(turns=tuple(context))
    replayed = () if agent.memory_policy is MemoryPolicy.RETRIEVAL else context.turns
    return (
        system_message(agent, context),
        *(Message(m.role, m.content) for m in replayed),
        Message("user", user_input),
    )


def summary_messages(instructions: str, previous: str, turns: Sequence[Message]) -> tuple[Message, ...]:
    """The request that folds ``turns`` into the ``previous`` summary (empty for the first)."""
    transcript = "\n".join(f"{m.role}: {one_line(m.content)}" for m in turns)
    body = f"Summary so far:\n{previous}\n\n" if previous else ""
    return (
        Message("system", instructions),
        Message("user", f"{body}New messages:\n{transcript}\n\nWrite the updated summary."),
    )
