"""Every proto <-> domain conversion of the router: its own API, and its engine and memory calls."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import struct_pb2
from quartet.engine.v1 import engine_pb2
from quartet.memory.v1 import memory_pb2
from quartet.router.v1 import router_pb2

from quartet.services.common import finish_reasons
from quartet.services.router.agents import Agent, MemoryPolicy, Priority
from quartet.services.router.domain import (
    Decision,
    DoneEvent,
    EngineRequest,
    ErrorEvent,
    Finished,
    MemoryContext,
    Message,
    RouteInput,
    RunEvent,
    RunInput,
    SummaryNote,
    TokenEvent,
)

# --- the router's own API -------------------------------------------------------------------


def _usage_to_pb(prompt_tokens: int, completion_tokens: int) -> engine_pb2.Usage:
    return engine_pb2.Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


def route_input_from_pb(request: router_pb2.RouteRequest) -> RouteInput:
    return RouteInput(input=request.input, agent=request.agent or "router", request_id=request.request_id)


def decision_to_pb(decision: Decision) -> router_pb2.RouteResponse:
    value = struct_pb2.Struct()
    value.update(decision.value)
    return router_pb2.RouteResponse(
        decision=value,
        decision_json=decision.json,
        agent=decision.agent,
        usage=_usage_to_pb(decision.prompt_tokens, decision.completion_tokens),
    )


def run_input_from_pb(request: router_pb2.RunRequest) -> RunInput:
    return RunInput(
        agent=request.agent,
        input=request.input,
        session_id=request.session_id,
        topic_id=request.topic_id,
        request_id=request.request_id,
        max_tokens=request.max_tokens,
        memory_mode=request.memory_mode,
    )


def run_event_to_pb(event: RunEvent) -> router_pb2.RunResponse:
    if isinstance(event, TokenEvent):
        return router_pb2.RunResponse(token=router_pb2.RunToken(text=event.text))
    if isinstance(event, DoneEvent):
        return router_pb2.RunResponse(
            done=router_pb2.RunDone(
                finish_reason=finish_reasons.to_pb(event.finish_reason),
                usage=_usage_to_pb(event.prompt_tokens, event.completion_tokens),
            )
        )
    if isinstance(event, ErrorEvent):
        return router_pb2.RunResponse(error=router_pb2.RunError(message=event.message))
    raise TypeError(f"not a run event: {event!r}")


def agent_to_pb(agent: Agent) -> router_pb2.AgentInfo:
    return router_pb2.AgentInfo(
        name=agent.name, description=agent.description, kind=agent.kind.value, memory_policy=agent.memory_policy.value
    )


# --- engine calls ---------------------------------------------------------------------------

_PRIORITY_TO_PB = {
    Priority.DEFAULT: engine_pb2.PRIORITY_DEFAULT,
    Priority.TOPIC: engine_pb2.PRIORITY_TOPIC,
    Priority.ROUTER: engine_pb2.PRIORITY_ROUTER,
}


def _chat_to_pb(messages: Sequence[Message]) -> engine_pb2.ChatInput:
    return engine_pb2.ChatInput(messages=[engine_pb2.ChatMessage(role=m.role, content=m.content) for m in messages])


def generate_request_to_pb(request: EngineRequest) -> engine_pb2.GenerateRequest:
    message = engine_pb2.GenerateRequest(
        request_id=request.request_id,
        sampling=engine_pb2.SamplingParams(temperature=request.temperature, top_p=request.top_p),
        stopping=engine_pb2.StoppingCriteria(max_tokens=request.max_tokens, stop=list(request.stop)),
        priority=_PRIORITY_TO_PB[request.priority],
    )
    if request.messages:
        message.chat.CopyFrom(_chat_to_pb(request.messages))
    else:
        message.text = request.text
    if request.grammar:
        message.constraint.grammar = request.grammar
    elif request.json_schema:
        message.constraint.json_schema = request.json_schema
    return message


def finished_from_pb(complete: engine_pb2.Complete) -> Finished:
    return Finished(
        finish_reason=finish_reasons.name(complete.finish_reason),
        prompt_tokens=complete.usage.prompt_tokens,
        completion_tokens=complete.usage.completion_tokens,
    )


def count_tokens_request_to_pb(messages: Sequence[Message], text: str) -> engine_pb2.CountTokensRequest:
    if messages:
        return engine_pb2.CountTokensRequest(chat=_chat_to_pb(messages))
    return engine_pb2.CountTokensRequest(text=text)


# --- memory calls ---------------------------------------------------------------------------

_POLICY_TO_PB = {
    MemoryPolicy.NONE: memory_pb2.MEMORY_POLICY_NONE,
    MemoryPolicy.SESSION_WINDOW: memory_pb2.MEMORY_POLICY_SESSION_WINDOW,
    MemoryPolicy.TOPIC_WINDOW: memory_pb2.MEMORY_POLICY_TOPIC_WINDOW,
    MemoryPolicy.TOPIC_SUMMARY: memory_pb2.MEMORY_POLICY_TOPIC_SUMMARY,
    MemoryPolicy.RETRIEVAL: memory_pb2.MEMORY_POLICY_RETRIEVAL,
}


def memory_policy_to_pb(policy: MemoryPolicy) -> int:
    return _POLICY_TO_PB[policy]


def message_from_turn_pb(turn: memory_pb2.Turn) -> Message:
    return Message(role=turn.role, content=turn.content, num_tokens=turn.num_tokens, turn_id=turn.turn_id)


def summary_from_pb(summary: memory_pb2.Summary) -> SummaryNote:
    return SummaryNote(content=summary.content, num_tokens=summary.num_tokens, through_turn_id=summary.through_turn_id)


def context_from_pb(response: memory_pb2.GetContextResponse) -> MemoryContext:
    return MemoryContext(
        turns=tuple(message_from_turn_pb(t) for t in response.turns),
        summary=summary_from_pb(response.summary) if response.HasField("summary") else None,
        unsummarized=tuple(message_from_turn_pb(t) for t in response.unsummarized),
    )


def message_to_turn_pb(message: Message) -> memory_pb2.Turn:
    return memory_pb2.Turn(role=message.role, content=message.content, num_tokens=message.num_tokens)
