"""MemoryService over a real channel: storage, windows, budgets, topics, Forget."""

from __future__ import annotations

import time

from quartet.memory.v1 import memory_pb2 as pb


def turn(role: str, content: str, num_tokens: int = 0) -> pb.Turn:
    return pb.Turn(role=role, content=content, num_tokens=num_tokens)


async def append(stub, session: str, contents: list[str], topic: str = "", num_tokens: int = 0) -> int:
    roles = ["user", "assistant"]
    turns = [turn(roles[i % 2], c, num_tokens) for i, c in enumerate(contents)]
    response = await stub.AppendTurns(pb.AppendTurnsRequest(session_id=session, topic_id=topic, turns=turns))
    return response.num_turns


async def context(stub, **fields) -> list[pb.Turn]:
    return list((await stub.GetContext(pb.GetContextRequest(**fields))).turns)


async def test_append_then_read_back_in_order(memory):
    before = time.time()
    assert await append(memory.stub, "s1", ["hello", "hi there"]) == 2
    assert await append(memory.stub, "s1", ["how are you?"]) == 3
    turns = await context(memory.stub, policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s1", k=10)
    assert [(t.role, t.content) for t in turns] == [("user", "hello"), ("assistant", "hi there"), ("user", "how are you?")]
    assert all(before <= t.created_at <= time.time() for t in turns)


async def test_client_created_at_is_ignored(memory):
    request = pb.AppendTurnsRequest(session_id="s", turns=[pb.Turn(role="user", content="x", created_at=42.0)])
    await memory.stub.AppendTurns(request)
    (stored,) = await context(memory.stub, policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s")
    assert stored.created_at > 1e9


async def test_session_window_is_exactly_the_last_k(memory):
    await append(memory.stub, "s", [f"m{i}" for i in range(8)])
    await append(memory.stub, "other", ["noise"])
    turns = await context(memory.stub, policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s", k=3)
    assert [t.content for t in turns] == ["m5", "m6", "m7"]


async def test_k_zero_uses_the_service_default(memory):
    await append(memory.stub, "s", [f"m{i}" for i in range(8)])
    turns = await context(memory.stub, policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s")
    assert [t.content for t in turns] == ["m3", "m4", "m5", "m6", "m7"]  # default_k is 5 in the fixture


async def test_policy_none_returns_nothing(memory):
    await append(memory.stub, "s", ["a"])
    assert await context(memory.stub, policy=pb.MEMORY_POLICY_NONE, session_id="s") == []
    assert await context(memory.stub, session_id="s") == []  # unspecified means none


async def test_topic_window_spans_sessions(memory):
    await append(memory.stub, "s1", ["a1", "a2"], topic="paris")
    await append(memory.stub, "s2", ["b1"], topic="paris")
    await append(memory.stub, "s2", ["elsewhere"], topic="rome")
    await append(memory.stub, "s3", ["b2", "b3"], topic="paris")
    turns = await context(memory.stub, policy=pb.MEMORY_POLICY_TOPIC_WINDOW, topic_id="paris", k=4)
    assert [t.content for t in turns] == ["a2", "b1", "b2", "b3"]


async def test_session_window_ignores_other_sessions_of_a_topic(memory):
    await append(memory.stub, "s1", ["mine"], topic="t")
    await append(memory.stub, "s2", ["theirs"], topic="t")
    turns = await context(memory.stub, policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s1", k=10)
    assert [t.content for t in turns] == ["mine"]


async def test_token_budget_drops_oldest_first(memory):
    request = pb.AppendTurnsRequest(
        session_id="s",
        turns=[turn("user", "a", 40), turn("assistant", "b", 30), turn("user", "c", 20), turn("assistant", "d", 10)],
    )
    await memory.stub.AppendTurns(request)
    window = dict(policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s", k=10)
    assert [t.content for t in await context(memory.stub, **window, token_budget=60)] == ["b", "c", "d"]
    assert [t.content for t in await context(memory.stub, **window, token_budget=59)] == ["c", "d"]
    assert [t.content for t in await context(memory.stub, **window, token_budget=100)] == ["a", "b", "c", "d"]
    assert await context(memory.stub, **window, token_budget=9) == []
    assert [t.num_tokens for t in await context(memory.stub, **window)] == [40, 30, 20, 10]


async def test_list_topics_most_recent_first(memory):
    await append(memory.stub, "s1", ["x", "y"], topic="old")
    await append(memory.stub, "s1", ["z"], topic="new")
    await append(memory.stub, "s2", ["w"], topic="old")
    await append(memory.stub, "s2", ["no topic"])
    everything = (await memory.stub.ListTopics(pb.ListTopicsRequest())).topics
    assert [(t.topic_id, t.num_turns) for t in everything] == [("old", 3), ("new", 1)]
    assert everything[0].last_active_at >= everything[1].last_active_at
    in_s1 = (await memory.stub.ListTopics(pb.ListTopicsRequest(session_id="s1"))).topics
    assert [(t.topic_id, t.num_turns) for t in in_s1] == [("new", 1), ("old", 2)]


async def test_append_counts_session_and_topic(memory):
    await append(memory.stub, "s", ["a", "b"], topic="t1")
    assert await append(memory.stub, "s", ["c"], topic="t2") == 1
    assert await append(memory.stub, "s", ["d"]) == 4


async def test_forget_by_session_topic_and_both(memory):
    await append(memory.stub, "s1", ["a", "b"], topic="t")
    await append(memory.stub, "s1", ["c"], topic="u")
    await append(memory.stub, "s2", ["d"], topic="t")
    await append(memory.stub, "s3", ["e"], topic="t")

    both = await memory.stub.Forget(pb.ForgetRequest(session_id="s1", topic_id="t"))
    assert both.num_deleted == 2
    assert [t.content for t in await context(memory.stub, policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="s1")] == ["c"]

    by_topic = await memory.stub.Forget(pb.ForgetRequest(topic_id="t"))
    assert by_topic.num_deleted == 2
    assert await context(memory.stub, policy=pb.MEMORY_POLICY_TOPIC_WINDOW, topic_id="t") == []

    by_session = await memory.stub.Forget(pb.ForgetRequest(session_id="s1"))
    assert by_session.num_deleted == 1
    assert (await memory.stub.Forget(pb.ForgetRequest(session_id="s1"))).num_deleted == 0
