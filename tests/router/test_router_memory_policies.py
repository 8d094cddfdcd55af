"""Topic agents with the summary and retrieval policies, and the CountTokens fit, on the real
engine and a real memory server (with the real embedding model)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc
from quartet.memory.v1 import memory_pb2
from quartet.router.v1 import router_pb2 as pb

from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.router.context_fit import SAFETY_MARGIN_TOKENS, fit_messages
from quartet.services.router.domain import MemoryContext, Message, SummaryNote
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.prompting import RETRIEVED_HEADING, SUMMARY_HEADING


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def run_turn(router, **fields) -> pb.RunDone:
    events = [event async for event in router.stub.Run(pb.RunRequest(**fields))]
    assert events[-1].HasField("done"), events[-1]
    return events[-1].done


@pytest.fixture(scope="module")
async def engine(engine_address):
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def count(engine, messages: list[tuple[str, str]]) -> int:
    chat = engine_pb2.ChatInput(messages=[engine_pb2.ChatMessage(role=r, content=c) for r, c in messages])
    return (await engine.CountTokens(engine_pb2.CountTokensRequest(chat=chat))).num_tokens


async def test_topic_summary_is_written_by_the_engine_and_used(router, memory, engine):
    topic, session = new_id("t"), new_id("s")
    for text in ("I live in Porto.", "My sister is called Ana.", "I like green tea."):
        await run_turn(router, agent="summarized", input=text, session_id=session, topic_id=topic)
    await router.core._topic_turn.summarizer.wait_idle()

    context = await memory.stub.GetContext(
        memory_pb2.GetContextRequest(policy=memory_pb2.MEMORY_POLICY_TOPIC_SUMMARY, topic_id=topic, k=2)
    )
    assert context.HasField("summary") and context.summary.content.strip()
    assert context.summary.num_tokens > 0  # counted by the engine's CountTokens
    # 6 turns stored, the last 2 are the window: the summary covers at least the first 2.
    assert context.summary.through_turn_id >= context.turns[0].turn_id - 4
    assert len(context.unsummarized) < 2  # nothing left above the refresh threshold

    done = await run_turn(router, agent="summarized", input="Where do I live?", session_id=new_id("s"), topic_id=topic)
    agent = router.core.agents.get("summarized")
    expected = [("system", f"{agent.system_prompt}\n\n{SUMMARY_HEADING}\n{context.summary.content}")]
    expected += [(t.role, t.content) for t in context.turns] + [("user", "Where do I live?")]
    assert done.usage.prompt_tokens == await count(engine, expected)


async def test_retrieval_puts_the_most_similar_turns_in_the_system_message(router, memory, engine):
    session = new_id("s")
    for text in ("My dog is called Rex.", "I am learning to play the cello.", "Tomorrow I fly to Oslo."):
        await run_turn(router, agent="recalling", input=text, session_id=session)
    question = "What is the name of my dog?"
    hits = (await memory.stub.Search(memory_pb2.SearchRequest(query=question, session_id=session, k=2))).hits
    assert "Rex" in hits[0].turn.content or "Rex" in hits[1].turn.content

    done = await run_turn(router, agent="recalling", input=question, session_id=session)
    agent = router.core.agents.get("recalling")
    notes = "".join(f"\n- {h.turn.role}: {h.turn.content}" for h in sorted(hits, key=lambda h: h.turn.turn_id))
    expected = [("system", f"{agent.system_prompt}\n\n{RETRIEVED_HEADING}{notes}"), ("user", question)]
    assert done.usage.prompt_tokens == await count(engine, expected)


async def test_fit_drops_oldest_turns_until_the_count_fits_and_keeps_the_summary(router, engine_address, engine):
    agent = router.core.agents.get("summarized")
    turns = tuple(Message("user" if i % 2 == 0 else "assistant", f"Turn number {i} says something fairly long " * 3) for i in range(8))
    context = MemoryContext(turns=turns, summary=SummaryNote("The user lives in Porto.", 8, 1))
    client = EngineClient(engine_address)
    try:
        whole, _ = await fit_messages(client, agent, context, "Hi", context_length=100_000, max_tokens=10)
        full = (await client.count_tokens(messages=whole)).num_tokens
        # Room for about half the turns: the newest ones stay, the summary stays.
        limit = full - 4 * 25
        messages, kept = await fit_messages(client, agent, context, "Hi", context_length=limit + 10 + SAFETY_MARGIN_TOKENS, max_tokens=10)
        counted = (await client.count_tokens(messages=messages)).num_tokens
        assert counted <= limit
        assert 0 < len(kept.turns) < len(turns) and kept.turns == turns[-len(kept.turns):]
        assert kept.summary is not None and SUMMARY_HEADING in messages[0].content
    finally:
        await client.close()


async def test_summary_and_retrieval_agents_need_their_ids(router):
    for request, text in (
        (pb.RunRequest(agent="summarized", input="hi", session_id="s"), "topic_id is required"),
        (pb.RunRequest(agent="recalling", input="hi"), "session_id is required"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await router.stub.Run(request).read()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in caught.value.details()
