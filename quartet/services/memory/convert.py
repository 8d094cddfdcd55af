"""Proto <-> domain conversions for the memory service, all in one place."""

from __future__ import annotations

from quartet.memory.v1 import memory_pb2

from quartet.services.common.errors import InvalidArgument
from quartet.services.memory.responses import ResponseRecord
from quartet.services.memory.turns import Context, ContextQuery, Policy, SearchHit, Summary, TopicInfo, Turn

_POLICIES = {
    memory_pb2.MEMORY_POLICY_UNSPECIFIED: Policy.NONE,
    memory_pb2.MEMORY_POLICY_NONE: Policy.NONE,
    memory_pb2.MEMORY_POLICY_SESSION_WINDOW: Policy.SESSION_WINDOW,
    memory_pb2.MEMORY_POLICY_TOPIC_WINDOW: Policy.TOPIC_WINDOW,
    memory_pb2.MEMORY_POLICY_TOPIC_SUMMARY: Policy.TOPIC_SUMMARY,
    memory_pb2.MEMORY_POLICY_RETRIEVAL: Policy.RETRIEVAL,
}
_POLICY_TO_PB = {
    Policy.NONE: memory_pb2.MEMORY_POLICY_NONE,
    Policy.SESSION_WINDOW: memory_pb2.MEMORY_POLICY_SESSION_WINDOW,
    Policy.TOPIC_WINDOW: memory_pb2.MEMORY_POLICY_TOPIC_WINDOW,
    Policy.TOPIC_SUMMARY: memory_pb2.MEMORY_POLICY_TOPIC_SUMMARY,
    Policy.RETRIEVAL: memory_pb2.MEMORY_POLICY_RETRIEVAL,
}


def policy_from_pb(value: int) -> Policy:
    try:
        return _POLICIES[value]
    except KeyError:
        raise InvalidArgument(f"policy {value} is not a known MemoryPolicy", field="policy") from None


def policy_to_pb(policy: Policy) -> int:
    return _POLICY_TO_PB[policy]


def turn_from_pb(turn: memory_pb2.Turn) -> Turn:
    # created_at is the service's to set; a client's value is ignored.
    return Turn(role=turn.role, content=turn.content, num_tokens=turn.num_tokens)


def turn_to_pb(turn: Turn) -> memory_pb2.Turn:
    return memory_pb2.Turn(
        role=turn.role, content=turn.content, num_tokens=turn.num_tokens, created_at=turn.created_at, turn_id=turn.turn_id
    )


def query_from_pb(request: memory_pb2.GetContextRequest) -> ContextQuery:
    return ContextQuery(
        policy=policy_from_pb(request.policy),
        session_id=request.session_id,
        topic_id=request.topic_id,
        k=request.k,
        token_budget=request.token_budget,
        query=request.query,
    )


def summary_to_pb(summary: Summary) -> memory_pb2.Summary:
    return memory_pb2.Summary(
        content=summary.content,
        num_tokens=summary.num_tokens,
        through_turn_id=summary.through_turn_id,
        created_at=summary.created_at,
    )


def context_to_pb(context: Context) -> memory_pb2.GetContextResponse:
    response = memory_pb2.GetContextResponse(
        turns=[turn_to_pb(t) for t in context.turns], unsummarized=[turn_to_pb(t) for t in context.unsummarized]
    )
    if context.summary is not None:
        response.summary.CopyFrom(summary_to_pb(context.summary))
    return response


def hit_to_pb(hit: SearchHit) -> memory_pb2.SearchHit:
    return memory_pb2.SearchHit(turn=turn_to_pb(hit.turn), score=hit.score)


def topic_to_pb(topic: TopicInfo) -> memory_pb2.TopicInfo:
    return memory_pb2.TopicInfo(topic_id=topic.topic_id, num_turns=topic.num_turns, last_active_at=topic.last_active_at)


def record_from_pb(request: memory_pb2.PutResponseRequest) -> ResponseRecord:
    return ResponseRecord(
        response_id=request.response_id, previous_response_id=request.previous_response_id, body_json=request.body_json
    )


def record_to_pb(record: ResponseRecord) -> memory_pb2.GetResponseResponse:
    return memory_pb2.GetResponseResponse(
        response_id=record.response_id,
        previous_response_id=record.previous_response_id,
        body_json=record.body_json,
        created_at=record.created_at,
    )
