"""Supervision and kill drills (issue 18): services die with SIGKILL under the launcher that
`make run` starts, and the suite recovers with no restart of anything else.

The drills use the real suite (four processes, the bundled model, SQLite). The give-up test
uses a stand-in service that exits at once: a fault made to happen, named as such.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid

import grpc
import httpx
import pytest
import socketio
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from quartet.services.launcher import Launcher, RestartPolicy, ServiceSpec, Topology
from tests.e2e.test_launcher import MODEL, suite  # noqa: F401  (the fixture: the suite as `make run` starts it)

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _statuses_until_ok(call, *, deadline_s: float = 180.0) -> list[int]:
    """Call until a 200, recording each status (and Retry-After on each 503)."""
    seen: list[int] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        reply = call()
        seen.append(reply.status_code)
        if reply.status_code == 200:
            return seen
        assert reply.status_code == 503, reply.text
        assert int(reply.headers["retry-after"]) >= 1
        time.sleep(0.5)
    pytest.fail(f"no 200 within {deadline_s:.0f} s: {seen[-10:]}")


def _wait_for(launcher, text: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in launcher.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert text in launcher.log(), launcher.output()


def test_kill_drills_engine_router_memory(suite) -> None:  # noqa: F811
    launcher, url = suite
    http = httpx.Client(base_url=url, timeout=60)
    chat = lambda **extra: http.post(  # noqa: E731
        "/v1/chat/completions", json={"model": MODEL, "messages": QUESTION, "max_tokens": 8, "temperature": 0, **extra}
    )

    # 1. The engine is SIGKILLed mid-stream: the stream ends with an error event, then [DONE].
    body = {"model": MODEL, "messages": QUESTION, "stream": True, "max_tokens": 4000, "ignore_eos": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        os.kill(launcher.child_pids()["engine"], signal.SIGKILL)
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]" and "error" in json.loads(rest[-2][len("data: "):]), rest[-3:]
    # New requests are 503 with Retry-After until the launcher has the engine back; then 200,
    # from the same gateway process.
    gateway_pid = launcher.child_pids()["gateway"]
    statuses = _statuses_until_ok(chat)
    assert statuses[0] == 503 and statuses[-1] == 200, statuses
    assert "engine died (killed by SIGKILL); restarting it" in launcher.log(), launcher.output()
    assert launcher.child_pids()["gateway"] == gateway_pid

    # 1b. The same over Socket.IO and straight over gRPC: an `error` event, and UNAVAILABLE.
    assert asyncio.run(_socket_run_while_engine_dies(launcher, url)) == "error"
    assert _statuses_until_ok(chat)[-1] == 200  # back again before the gRPC drill
    engine_address = launcher.env["ENGINE_ADDRESS"]
    with grpc.insecure_channel(engine_address) as channel:
        stream = engine_pb2_grpc.EngineServiceStub(channel).Generate(
            engine_pb2.GenerateRequest(
                text="Tell me a long story.", stopping=engine_pb2.StoppingCriteria(max_tokens=4000, ignore_eos=True)
            ),
            timeout=120,
        )
        next(stream)
        os.kill(launcher.child_pids()["engine"], signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as info:
            for _ in stream:
                pass
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    assert _statuses_until_ok(chat)[-1] == 200

    # 2. The router is SIGKILLed: the agent routes are 503, then answer again.
    agent = lambda: http.post(  # noqa: E731
        "/v1/chat/completions",
        json={"model": "agent/chat", "messages": [{"role": "user", "content": "Hi, I am Ada."}], "max_tokens": 8},
        headers={"X-Session-Id": session},
    )
    session = f"drill-{uuid.uuid4().hex[:8]}"
    assert agent().status_code == 200
    os.kill(launcher.child_pids()["router"], signal.SIGKILL)
    _wait_for(launcher, "router died (killed by SIGKILL)")
    statuses = _statuses_until_ok(agent)
    assert statuses[-1] == 200, statuses
    assert chat().status_code == 200, "plain chat never needed the router"

    # 3. Memory is SIGKILLed between turns: every acknowledged turn is there after its restart.
    session = f"drill-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        assert agent().status_code == 200  # each 200 is an acknowledged turn (user + assistant)
    os.kill(launcher.child_pids()["memory"], signal.SIGKILL)
    _wait_for(launcher, "memory died (killed by SIGKILL)")
    _wait_for(launcher, "memory is serving again")
    with grpc.insecure_channel(launcher.env["MEMORY_ADDRESS"]) as channel:
        context = memory_pb2_grpc.MemoryServiceStub(channel).GetContext(
            memory_pb2.GetContextRequest(policy=memory_pb2.MEMORY_POLICY_SESSION_WINDOW, session_id=session, k=50),
            timeout=10,
        )
    assert [t.role for t in context.turns] == ["user", "assistant"] * 3, context
    assert launcher.child_pids()["gateway"] == gateway_pid
    http.close()


async def _socket_run_while_engine_dies(launcher, url: str) -> str:
    """A Socket.IO run of a long answer; the engine is killed after its first token. The event that ends it."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=["websocket"], socketio_path="socket.io")
    ended: asyncio.Future = asyncio.get_running_loop().create_future()
    killed = False

    @client.on("token")
    async def on_token(data):
        nonlocal killed
        if not killed:
            killed = True
            os.kill(launcher.child_pids()["engine"], signal.SIGKILL)
        return True

    client.on("done", lambda data: ended.done() or ended.set_result("done"))
    client.on("error", lambda data: ended.done() or ended.set_result("error"))
    try:
        await client.emit("run", {"agent": "chat", "input": "Tell me a long story about a dragon.",
                                  "session_id": f"drill-{uuid.uuid4().hex[:8]}", "max_tokens": 2000})
        return await asyncio.wait_for(ended, 120)
    finally:
        await client.disconnect()


def test_a_service_that_keeps_dying_is_given_up_on_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    """A stand-in service (fault injection: it exits with status 3 at once) is restarted with
    back-off, then given up on; the launcher's supervise() reports failure."""
    launcher = Launcher(Topology(), dict(os.environ), RestartPolicy(max_restarts=2, window_seconds=60, initial_backoff_seconds=0.05))
    crasher = ServiceSpec(
        "crasher", "crasher", probe=lambda: "SERVING", start_timeout=5,
        argv=[sys.executable, "-c", "import sys; sys.exit(3)"],
    )
    started = time.monotonic()
    try:
        launcher.start([crasher])
        assert launcher.supervise() == 1
    finally:
        launcher.stop()
    out = capsys.readouterr().out
    assert out.count("crasher died (exited with status 3); restarting it") == 2, out
    assert "GIVING UP on crasher: it died 3 times within 60 s" in out, out
    # Back-off doubles: 0.05 s then 0.1 s before the two restarts.
    assert time.monotonic() - started >= 0.15
