"""Run on the real engine with a real memory server: streaming, memory, cancellation, errors."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc
from quartet.memory.v1 import memory_pb2
from quartet.router.v1 import router_pb2 as pb

from quartet.services.common.grpc_server import CHANNEL_OPTIONS


def session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


async def run_turn(router, **fields) -> tuple[str, pb.RunDone, list[pb.RunResponse]]:
    events = [event async for event in router.stub.Run(pb.RunRequest(**fields))]
    text = "".join(e.token.text for e in events if e.HasField("token"))
    assert [e.WhichOneof("event") for e in events][-1] == "done", events[-1]
    assert all(e.HasField("token") for e in events[:-1])
    return text, events[-1].done, events


async def stored(memory, session_id: str) -> list[memory_pb2.Turn]:
    request = memory_pb2.GetContextRequest(policy=memory_pb2.MEMORY_POLICY_SESSION_WINDOW, session_id=session_id, k=50)
    return list((await memory.stub.GetContext(request)).turns)


@pytest.fixture(scope="module")
async def engine(engine_address):
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def test_run_streams_and_stores_the_turn(router, memory):
    sid = session()
    text, done, events = await run_turn(router, agent="chat", input="My name is Ada.", session_id=sid, max_tokens=12)
    assert len(events) >= 3 and text.strip()
    assert done.finish_reason in (engine_pb2.FINISH_REASON_STOP, engine_pb2.FINISH_REASON_LENGTH)
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert 0 < done.usage.completion_tokens <= 12 and done.usage.prompt_tokens > 0
    turns = await stored(memory, sid)
    assert [(t.role, t.content) for t in turns] == [("user", "My name is Ada."), ("assistant", text)]
    assert turns[0].num_tokens > 0
    assert turns[1].num_tokens == done.usage.completion_tokens


async def test_second_run_sees_the_first_turn(router, memory, engine):
    sid = session()
    first, _, _ = await run_turn(router, agent="chat", input="My name is Ada.", session_id=sid, max_tokens=10)
    _, done, _ = await run_turn(router, agent="chat", input="What is my name?", session_id=sid, max_tokens=10)
    _, fresh, _ = await run_turn(router, agent="chat", input="What is my name?", session_id=session(), max_tokens=10)

    # The engine's own count of system + first turn + new message is exactly what the second turn's prompt held.
    agent = router.core.agents.get("chat")
    expected = [("system", agent.system_prompt), ("user", "My name is Ada."), ("assistant", first), ("user", "What is my name?")]
    chat = engine_pb2.ChatInput(messages=[engine_pb2.ChatMessage(role=r, content=c) for r, c in expected])
    counted = await engine.CountTokens(engine_pb2.CountTokensRequest(chat=chat))
    assert done.usage.prompt_tokens == counted.num_tokens
    assert done.usage.prompt_tokens > fresh.usage.prompt_tokens
    assert [t.content for t in await stored(memory, sid)][::2] == ["My name is Ada.", "What is my name?"]


async def test_topic_window_carries_across_sessions(router, memory):
    topic = f"t-{uuid.uuid4().hex[:8]}"
    await run_turn(router, agent="topical", input="The password is swordfish.", session_id=session(), topic_id=topic)
    _, later, _ = await run_turn(router, agent="topical", input="What is the password?", session_id=session(), topic_id=topic)
    _, fresh, _ = await run_turn(router, agent="topical", input="What is the password?", session_id=session(), topic_id=topic + "x")
    assert later.usage.prompt_tokens > fresh.usage.prompt_tokens
    window = await memory.stub.GetContext(
        memory_pb2.GetContextRequest(policy=memory_pb2.MEMORY_POLICY_TOPIC_WINDOW, topic_id=topic, k=10)
    )
    assert [t.content for t in window.turns][::2] == ["The password is swordfish.", "What is the password?"]


async def test_agent_without_memory_stores_nothing(router, memory):
    sid = session()
    text, done, _ = await run_turn(router, agent="oneshot", input="Say hello.", session_id=sid)
    assert text and done.usage.completion_tokens <= 8
    assert await stored(memory, sid) == []


async def test_cancel_aborts_the_engine_and_stores_nothing(router, memory, engine):
    sid = session()
    call = router.stub.Run(pb.RunRequest(agent="chat", input="Tell me a long story about a dragon.", session_id=sid, max_tokens=400))
    first = await call.read()
    assert first.HasField("token")
    call.cancel()
    for _ in range(100):  # the engine drops the sequence within a decode step; allow for scheduling
        info = await engine.GetModelInfo(engine_pb2.GetModelInfoRequest())
        if info.num_running == 0 and info.num_waiting == 0:
            break
        await asyncio.sleep(0.05)
    assert info.num_running == 0 and info.num_waiting == 0
    await asyncio.sleep(0.2)
    assert await stored(memory, sid) == []


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (pb.RunRequest(agent="chat", input="hi"), grpc.StatusCode.INVALID_ARGUMENT, "session_id is required"),
        (pb.RunRequest(agent="topical", input="hi", session_id="s"), grpc.StatusCode.INVALID_ARGUMENT, "topic_id is required"),
        (pb.RunRequest(agent="", input="hi", session_id="s"), grpc.StatusCode.INVALID_ARGUMENT, "agent is required"),
        (pb.RunRequest(agent="ghost", input="hi", session_id="s"), grpc.StatusCode.NOT_FOUND, "no agent named 'ghost'"),
        (pb.RunRequest(agent="router", input="hi", session_id="s"), grpc.StatusCode.INVALID_ARGUMENT, "call Route"),
        (pb.RunRequest(agent="chat", input="", session_id="s"), grpc.StatusCode.INVALID_ARGUMENT, "input is required"),
        (pb.RunRequest(agent="chat", input="hi", session_id="bad id!"), grpc.StatusCode.INVALID_ARGUMENT, "session_id may contain only"),
        (pb.RunRequest(agent="chat", input="hi", session_id="s", max_tokens=9000), grpc.StatusCode.INVALID_ARGUMENT, "exceeds the model's context"),
    ],
    ids=["no-session", "no-topic", "no-agent", "unknown-agent", "router-agent", "no-input", "bad-session-id", "too-many-tokens"],
)
async def test_run_rejects_bad_requests_before_streaming(router, request_, code, text):
    call = router.stub.Run(request_)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == code
    assert text in caught.value.details()


async def test_list_agents(router):
    agents = (await router.stub.ListAgents(pb.ListAgentsRequest())).agents
    assert [(a.name, a.kind, a.memory_policy) for a in agents][:2] == [
        ("router", "router", "none"),
        ("chat", "topic", "session_window"),
    ]
    assert all(a.description for a in agents[:2])


async def test_memory_down_is_unavailable(engine_address, router_server):
    async with router_server(engine_address, "127.0.0.1:1") as router:  # nothing listens on port 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await router.stub.Run(pb.RunRequest(agent="chat", input="hi", session_id="s")).read()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "memory unavailable at 127.0.0.1:1" in caught.value.details()


async def test_memory_mode_none_neither_reads_nor_writes(router, memory):
    sid = session()
    await run_turn(router, agent="chat", input="My name is Ada.", session_id=sid, max_tokens=4)
    _, remembered, _ = await run_turn(router, agent="chat", input="Who am I?", session_id=sid, max_tokens=4)
    _, off, _ = await run_turn(router, agent="chat", input="Who am I?", session_id=sid, max_tokens=4, memory_mode="none")
    assert off.usage.prompt_tokens < remembered.usage.prompt_tokens  # the stored turns were not read
    assert [t.content for t in await stored(memory, sid)][::2] == ["My name is Ada.", "Who am I?"]  # nor written
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Run(pb.RunRequest(agent="chat", input="hi", session_id=sid, memory_mode="forever")).read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "memory_mode" in caught.value.details()
