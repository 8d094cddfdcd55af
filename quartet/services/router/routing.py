"""Route: one greedy generation by a router agent, turned into a validated decision."""

from __future__ import annotations

import json
import logging
import time
from contextlib import aclosing

from quartet.services.common.errors import Aborted, InvalidArgument, Unavailable
from quartet.services.common.logs import debug_payloads
from quartet.services.router.agents import Agent
from quartet.services.router.decision import DecisionError, parse_decision
from quartet.services.router.domain import Decision, EngineRequest, Finished, TextDelta
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.prompting import router_prompt

log = logging.getLogger(__name__)


def decision_constraint(agent: Agent) -> tuple[str, str]:
    """What the engine forces the output into: ("grammar", GBNF) when the agent names a
    grammar, else ("json_schema", its schema). The output is validated afterwards all the
    same, so a constraint the engine applied loosely can never let a bad decision through."""
    if agent.grammar:
        return "grammar", agent.grammar
    return "json_schema", json.dumps(agent.schema)


def route_request(agent: Agent, user_input: str, request_id: str) -> EngineRequest:
    kind, constraint = decision_constraint(agent)
    return EngineRequest(
        request_id=request_id,
        priority=agent.priority,
        max_tokens=agent.generation.max_tokens,
        temperature=0.0,  # a decision must not depend on the dice
        text=router_prompt(agent, user_input, constrained=True),
        # No stop string: the grammar ends the output when the object is complete.
        grammar=constraint if kind == "grammar" else "",
        json_schema=constraint if kind == "json_schema" else "",
    )


async def decide(engine: EngineClient, agent: Agent, user_input: str, request_id: str) -> Decision:
    """Ask the engine, then extract and validate; DecisionError if the output is not a decision."""
    started = time.perf_counter()
    pieces: list[str] = []
    finished: Finished | None = None
    try:
        async with aclosing(engine.generate(route_request(agent, user_input, request_id))) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                else:
                    finished = event
    except InvalidArgument as error:
        if "max_tokens" not in error.message:
            raise
        # The agent's own setting, not the caller's request: no decision can fit its budget.
        raise DecisionError(
            f"agent {agent.name!r} cannot decide within its generation.max_tokens ({agent.generation.max_tokens}); "
            f"raise it in the agents file ({error.message})"
        ) from None
    if finished is None:
        raise Unavailable(f"the engine at {engine.address} ended the stream without finishing; retry")
    if finished.finish_reason == "abort":
        # As everywhere (common.finish_reasons): an aborted generation is an error, never a cut.
        raise Aborted("the routing request was aborted in the engine before it finished; retry")
    output = "".join(pieces)  # constrained: the whole decision, prefix included
    if debug_payloads():
        log.debug("router output", extra={"request_id": request_id, "output": output})
    value = parse_decision(output, agent.schema, agent.schema_id, truncated=finished.finish_reason == "length")
    log.info(
        "routed",
        extra={
            "agent": agent.name,
            "request_id": request_id,
            "prompt_tokens": finished.prompt_tokens,
            "completion_tokens": finished.completion_tokens,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return Decision(
        agent=agent.name,
        value=value,
        json=json.dumps(value, separators=(",", ":"), ensure_ascii=False),
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
    )
