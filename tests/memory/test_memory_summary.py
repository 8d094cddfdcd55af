"""The topic-summary policy and Summarize, over a real channel, on both backends."""

from __future__ import annotations

import grpc
import pytest
from quartet.memory.v1 import memory_pb2 as pb


async def fill(stub, topic: str, count: int, session: str = "s", num_tokens: int = 10) -> None:
    roles = ["user", "assistant"]
    turns = [pb.Turn(role=roles[i % 2], content=f"m{i}", num_tokens=num_tokens) for i in range(count)]
    for start in range(0, count, 10):  # the fixture allows 10 turns per append
        await stub.AppendTurns(pb.AppendTurnsRequest(session_id=session, topic_id=topic, turns=turns[start:start + 10]))


async def summary_context(stub, topic: str, k: int, token_budget: int = 0) -> pb.GetContextResponse:
    return await stub.GetContext(pb.GetContextRequest(policy=pb.MEMORY_POLICY_TOPIC_SUMMARY, topic_id=topic, k=k, token_budget=token_budget))


async def test_without_a_summary_everything_older_than_the_window_awaits_one(memory):
    await fill(memory.stub, "t", 7)
    context = await summary_context(memory.stub, "t", k=3)
    assert not context.HasField("summary")
    assert [t.content for t in context.turns] == ["m4", "m5", "m6"]
    assert [t.content for t in context.unsummarized] == ["m0", "m1", "m2"]  # oldest first, at most k
    ids = [t.turn_id for t in context.unsummarized] + [t.turn_id for t in context.turns]
    assert ids == sorted(ids) and len(set(ids)) == 7 - 1  # m3 is neither: it waits for the next summary


async def test_a_summary_covers_turns_and_rolls_forward(memory):
    await fill(memory.stub, "t", 8)
    first = await summary_context(memory.stub, "t", k=3)
    through = first.unsummarized[-1].turn_id  # m2
    stored = await memory.stub.Summarize(pb.SummarizeRequest(topic_id="t", content="They counted.", num_tokens=4, through_turn_id=through))
    assert stored.stored and stored.summary.through_turn_id == through and stored.summary.created_at > 0

    after = await summary_context(memory.stub, "t", k=3)
    assert after.summary.content == "They counted." and after.summary.num_tokens == 4
    assert [t.content for t in after.turns] == ["m5", "m6", "m7"]
    assert [t.content for t in after.unsummarized] == ["m3", "m4"]

    # An older refresh that lost the race must not move the summary backwards.
    stale = await memory.stub.Summarize(pb.SummarizeRequest(topic_id="t", content="stale", num_tokens=1, through_turn_id=through - 1))
    assert not stale.stored and stale.summary.content == "They counted."
    assert (await summary_context(memory.stub, "t", k=3)).summary.content == "They counted."


async def test_turns_the_summary_covers_are_not_repeated(memory):
    await fill(memory.stub, "t", 4)
    newest = (await summary_context(memory.stub, "t", k=4)).turns[-2].turn_id  # m2
    await memory.stub.Summarize(pb.SummarizeRequest(topic_id="t", content="all but m3", num_tokens=3, through_turn_id=newest))
    context = await summary_context(memory.stub, "t", k=4)
    assert [t.content for t in context.turns] == ["m3"] and len(context.unsummarized) == 0


async def test_budget_keeps_the_summary_and_drops_oldest_turns(memory):
    await fill(memory.stub, "t", 6, num_tokens=10)
    through = (await summary_context(memory.stub, "t", k=4)).unsummarized[-1].turn_id
    await memory.stub.Summarize(pb.SummarizeRequest(topic_id="t", content="summary", num_tokens=25, through_turn_id=through))
    context = await summary_context(memory.stub, "t", k=4, token_budget=50)
    assert context.summary.content == "summary"
    assert [t.content for t in context.turns] == ["m4", "m5"]  # 25 + 2 x 10 fits; a third turn would not
    tight = await summary_context(memory.stub, "t", k=4, token_budget=20)
    assert tight.summary.content == "summary" and len(tight.turns) == 0


async def test_forgetting_a_topic_or_a_session_in_it_drops_its_summary(memory):
    for topic in ("a", "b"):
        await fill(memory.stub, topic, 2, session="s1")
        through = (await summary_context(memory.stub, topic, k=1)).unsummarized[-1].turn_id
        await memory.stub.Summarize(pb.SummarizeRequest(topic_id=topic, content=f"about {topic}", through_turn_id=through))
    await memory.stub.Forget(pb.ForgetRequest(topic_id="a"))
    assert not (await summary_context(memory.stub, "a", k=1)).HasField("summary")
    assert (await summary_context(memory.stub, "b", k=1)).summary.content == "about b"
    await memory.stub.Forget(pb.ForgetRequest(session_id="s1"))  # the summary may quote the session's turns
    assert not (await summary_context(memory.stub, "b", k=1)).HasField("summary")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SummarizeRequest(content="x", through_turn_id=1), "topic_id"),
        (pb.SummarizeRequest(topic_id="t", content="  ", through_turn_id=1), "content"),
        (pb.SummarizeRequest(topic_id="t", content="x"), "through_turn_id"),
        (pb.SummarizeRequest(topic_id="t", content="x" * 1001, through_turn_id=1), "content"),
        (pb.SummarizeRequest(topic_id="a b", content="x", through_turn_id=1), "topic_id"),
    ],
    ids=["no-topic", "blank", "no-through", "too-long", "bad-topic"],
)
async def test_summarize_rejects(memory, request_, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.stub.Summarize(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


async def test_summary_policy_needs_a_topic(memory):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.stub.GetContext(pb.GetContextRequest(policy=pb.MEMORY_POLICY_TOPIC_SUMMARY, session_id="s"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "topic_id" in caught.value.details()
