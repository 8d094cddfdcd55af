"""Agents through the gateway: ``agent/<name>`` models on the OpenAI endpoints, and the
Socket.IO protocol with its backpressure, over the real router, memory and engine."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import AgentStack


@pytest.fixture(scope="module")
def stack(engine_address: str, agent_stack) -> Iterator[AgentStack]:
    # A small queue and window, so a slow reader reaches the limits within a short answer; a cap
    # (MAX_TOKENS_CAP) that the longest test answer fits, so Socket.IO's use of it can be seen.
    with agent_stack(
        engine_address, socketio_queue_size=4, socketio_window=2, socketio_ack_timeout_seconds=20, max_tokens_cap=300
    ) as live:
        yield live


@pytest.fixture()
def sdk(stack: AgentStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)


def new_session() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


def test_models_list_the_topic_agents(stack):
    ids = [m["id"] for m in httpx.get(f"{stack.gateway.url}/v1/models").json()["data"]]
    assert {"agent/chat", "agent/project", "agent/notes", "agent/recall", "agent/assistant"} <= set(ids)
    assert "agent/router" not in ids  # it answers Route, not chat
    assert not ids[0].startswith("agent/")  # the engine's model comes first


def test_agent_chat_remembers_by_session(sdk):
    sid = new_session()
    first = sdk.chat.completions.create(
        model="agent/chat", messages=[{"role": "user", "content": "My name is Ada."}], max_tokens=8, metadata={"session_id": sid}
    )
    assert first.choices[0].message.content and first.choices[0].finish_reason in ("stop", "length")
    assert first.usage.completion_tokens <= 8 and first.model == "agent/chat"
    # Streamed, with the session in a header this time: the second turn's prompt holds the first.
    stream = sdk.chat.completions.create(
        model="agent/chat", messages=[{"role": "user", "content": "What is my name?"}], max_tokens=8, stream=True,
        stream_options={"include_usage": True}, extra_headers={"X-Session-Id": sid},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > first.usage.prompt_tokens + 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"model": "agent/nobody"}, 404, "agent/nobody"),
        ({"model": "agent/router"}, 404, "does not exist"),
        ({"model": "agent/chat", "temperature": 0.5}, 400, "'temperature' is set by the agent's configuration"),
        ({"model": "agent/chat"}, 400, "session_id is required"),
        ({"model": "agent/chat", "messages": [{"role": "assistant", "content": "hi"}], "metadata": {"session_id": "s"}}, 400, "last message must be"),
        ({"model": "agent/chat", "metadata": {"session_id": "s", "memory_mode": "forever"}}, 400, "memory_mode"),
    ],
    ids=["unknown", "router-agent", "sampling", "no-session", "not-user", "bad-memory-mode"],
)
def test_agent_chat_errors(stack, body, status, text):
    body = {"messages": [{"role": "user", "content": "hi"}], **body}
    reply = httpx.post(f"{stack.gateway.url}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == status, reply.text
    assert text in reply.json()["error"]["message"]


async def socket_client(url: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=["websocket"], socketio_path="socket.io")
    return client


async def run_over_socket(url: str, payload: dict, ack_delay: float = 0.0) -> tuple[list[str], dict]:
    """Emit run; collect the token texts and the closing event (done or error)."""
    client = await socket_client(url)
    tokens: list[str] = []
    ended: asyncio.Future = asyncio.get_running_loop().create_future()
    reading = asyncio.Lock()  # one token at a time: a slow reader, not many concurrent ones

    @client.on("token")
    async def on_token(data):
        async with reading:
            tokens.append(data["text"])
            await asyncio.sleep(ack_delay)
        return True  # returning sends the acknowledgement

    @client.on("done")
    async def on_done(data):
        async with reading:  # after the tokens still being read
            ended.done() or ended.set_result({"event": "done", **data})

    @client.on("error")
    async def on_error(data):
        ended.done() or ended.set_result({"event": "error", **data})

    try:
        await client.emit("run", payload)
        return tokens, await asyncio.wait_for(ended, 120)
    finally:
        await client.disconnect()


async def test_socketio_streams_tokens_then_done(stack):
    sid = new_session()
    tokens, end = await run_over_socket(stack.gateway.url, {"agent": "agent/chat", "input": "Hello there!", "session_id": sid, "max_tokens": 12})
    assert end["event"] == "done", end
    assert len(tokens) >= 2 and "".join(tokens).strip()
    assert end["finish_reason"] in ("stop", "length")
    usage = end["usage"]
    assert 0 < usage["completion_tokens"] <= 12 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"input": "hi"}, "missing required parameter: 'agent'"),
        ({"agent": "chat", "input": 5}, "invalid value for 'input'"),
        ({"agent": "ghost", "input": "hi", "session_id": "s"}, "no agent named 'ghost'"),
        ({"agent": "chat", "input": "hi"}, "session_id is required"),
        # The hostile max_tokens of issue 18: each an error event naming the field, never a hang.
        ({"agent": "chat", "input": "hi", "session_id": "s", "max_tokens": 2**32}, "invalid value for 'max_tokens'"),
        ({"agent": "chat", "input": "hi", "session_id": "s", "max_tokens": True}, "got a boolean"),
        ({"agent": "chat", "input": "hi", "session_id": "s", "max_tokens": -1}, "invalid value for 'max_tokens'"),
        ({"agent": "chat", "input": "hi", "session_id": "s", "max_tokens": 2.5}, "got a number"),
        ({"agent": "chat", "input": "hi", "session_id": "s", "max_tokens": 301}, "more than this server allows (300)"),
        ({"agent": "chat", "input": "hi", "extra": 1}, "unrecognized request argument supplied: 'extra'"),
        (["not", "an", "object"], "run takes an object"),
    ],
    ids=["no-agent", "bad-input", "unknown-agent", "no-session", "2**32", "bool", "negative", "float", "past-cap",
         "unknown-field", "not-object"],
)
async def test_socketio_errors(stack, payload, text):
    tokens, end = await run_over_socket(stack.gateway.url, payload)
    assert tokens == [] and end["event"] == "error" and text in end["message"], end


async def test_slow_client_makes_the_producer_wait_and_memory_stays_bounded(stack):
    """The plan's backpressure check: a reader that takes 120 ms per token, against a queue of 4
    events and a window of 2 unacknowledged tokens. The gateway never holds more than that, and
    the producer (the router stream's reader) is seen waiting on the full queue."""
    socket = stack.app.state.agent_socket
    before = len(socket.finished)
    tokens, end = await run_over_socket(
        stack.gateway.url,
        {"agent": "chat", "input": "Tell me a long story about a dragon.", "session_id": new_session(), "max_tokens": 50},
        ack_delay=0.12,
    )
    assert end["event"] == "done", end
    stats = socket.finished[-1]
    assert len(socket.finished) == before + 1 and stats.num_tokens == len(tokens) >= 20
    assert stats.max_in_flight <= 2  # the window
    assert stats.max_queue_depth <= 4  # the bounded queue
    assert stats.num_producer_waits > 0  # the producer did wait for the slow client
    print(f"slow client: {stats}")


async def test_disconnect_mid_run_cancels_it(stack, engine_probe):
    client = await socket_client(stack.gateway.url)
    first = asyncio.get_running_loop().create_future()
    client.on("token", lambda data: first.done() or first.set_result(data))
    await client.emit("run", {"agent": "chat", "input": "Tell me a long story.", "session_id": new_session(), "max_tokens": 300})
    await asyncio.wait_for(first, 60)
    await client.disconnect()
    await asyncio.to_thread(engine_probe.wait_idle, 10)  # the engine dropped the sequence


async def test_socketio_runs_share_the_http_rate_limit(engine_address: str, agent_stack):
    """One limits layer: a Socket.IO run takes a request from the same bucket as an HTTP call, and
    the refusal is an error event with the Retry-After, as the HTTP 429 carries it."""
    with agent_stack(engine_address, rate_limit_per_minute=1, rate_limit_burst=1) as limited:
        url = limited.gateway.url
        # The one request of the minute; its own failure (no session) does not matter here.
        _, first = await run_over_socket(url, {"agent": "chat", "input": "hi"})
        assert "rate limit" not in first["message"], first
        _, second = await run_over_socket(url, {"agent": "chat", "input": "hi"})
        assert second["event"] == "error" and second["code"] == "rate_limit_exceeded" and second["retry_after"] >= 1
        async with httpx.AsyncClient(base_url=url) as http:
            reply = await http.get("/v1/models")  # same caller (this address), same empty bucket
        assert reply.status_code == 429 and int(reply.headers["retry-after"]) >= 1


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5,
)
_run_payloads = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"agent": st.sampled_from(["chat", "agent/chat", "router", "ghost", ""]) | _json},
        optional={
            "input": st.text(max_size=20) | _json,
            "session_id": st.text(max_size=10) | _json,
            "topic_id": st.text(max_size=10) | _json,
            "memory_mode": st.sampled_from(["none", "session_window", "bogus"]) | _json,
            "max_tokens": st.integers(-3, 3) | st.sampled_from([2**32, 2**32 - 1, True, 1.5]) | _json,
            "extra": _json,
        },
    ),
)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(payload=_run_payloads)
def test_socketio_run_payloads_fuzzed(stack, payload) -> None:
    """Hypothesis over the `run` event: whatever the payload, the run ends with `done` or an
    `error` event carrying a message, within the deadline (no hang), and the gateway stays up."""
    if isinstance(payload, dict) and isinstance(payload.get("max_tokens"), int) and not isinstance(payload["max_tokens"], bool):
        payload["max_tokens"] = min(payload["max_tokens"], 3)  # an accepted run answers fast
    _, end = asyncio.run(run_over_socket(stack.gateway.url, payload))
    assert end["event"] in ("done", "error"), end
    if end["event"] == "error":
        assert isinstance(end["message"], str) and end["message"], end
