"""Bad requests fail with INVALID_ARGUMENT and a message naming the field; nothing is stored."""

from __future__ import annotations

import grpc
import pytest
from quartet.memory.v1 import memory_pb2 as pb

USER = pb.Turn(role="user", content="hi")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.AppendTurnsRequest(turns=[USER]), "session_id"),
        (pb.AppendTurnsRequest(session_id="s"), "turns"),
        (pb.AppendTurnsRequest(session_id="s", turns=[USER, pb.Turn(role="robot", content="x")]), "turns[1].role"),
        (pb.AppendTurnsRequest(session_id="s", turns=[pb.Turn(role="user", content="é" * 501)]), "turns[0].content"),
        (pb.AppendTurnsRequest(session_id="s", turns=[USER] * 11), "turns"),
        (pb.AppendTurnsRequest(session_id="x" * 129, turns=[USER]), "session_id"),
        (pb.AppendTurnsRequest(session_id="a b", turns=[USER]), "session_id"),
        (pb.AppendTurnsRequest(session_id="s", topic_id="../t", turns=[USER]), "topic_id"),
    ],
    ids=["no-session", "no-turns", "bad-role", "content-too-big", "too-many-turns", "long-id", "id-charset", "topic-charset"],
)
async def test_append_rejects(memory, request_, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.stub.AppendTurns(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()
    topics = await memory.stub.ListTopics(pb.ListTopicsRequest())
    assert len(topics.topics) == 0
    stored = await memory.stub.GetContext(pb.GetContextRequest(policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s"))
    assert len(stored.turns) == 0


async def test_content_at_the_limit_is_accepted(memory):
    await memory.stub.AppendTurns(pb.AppendTurnsRequest(session_id="s", turns=[pb.Turn(role="tool", content="é" * 500)]))


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GetContextRequest(policy=pb.MEMORY_POLICY_SESSION_WINDOW), "session_id"),
        (pb.GetContextRequest(policy=pb.MEMORY_POLICY_TOPIC_WINDOW, session_id="s"), "topic_id"),
        (pb.GetContextRequest(policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s", k=51), "k"),
        (pb.GetContextRequest(policy=7, session_id="s"), "policy"),
    ],
    ids=["session-window-needs-session", "topic-window-needs-topic", "k-over-limit", "unknown-policy"],
)
async def test_get_context_rejects(memory, request_, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.stub.GetContext(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


async def test_forget_needs_an_id(memory):
    await memory.stub.AppendTurns(pb.AppendTurnsRequest(session_id="s", turns=[USER]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.stub.Forget(pb.ForgetRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session_id" in caught.value.details()
    stored = await memory.stub.GetContext(pb.GetContextRequest(policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s"))
    assert len(stored.turns) == 1
