"""``python -m quartet.services.memory`` as a real process: durability across restarts, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import grpc
import pytest
from quartet.memory.v1 import memory_pb2 as pb
from quartet.memory.v1 import memory_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MEMORY_DB_PATH", "MEMORY_LISTEN")}
    env.update(extra)
    return env


async def _start(db_path: Path, database_url: str = "") -> tuple[asyncio.subprocess.Process, int]:
    """Start the service on a free port and read the port from its 'serving' log line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quartet.services.memory",
        cwd=REPO,
        env=_env(MEMORY_LISTEN="127.0.0.1:0", MEMORY_DB_PATH=str(db_path), DATABASE_URL=database_url, MEMORY_EMBEDDINGS="none"),
        stderr=asyncio.subprocess.PIPE,
    )
    async def port_from_logs() -> int:
        async for line in process.stderr:
            entry = json.loads(line)
            if entry.get("event") == "serving":
                return int(entry["port"])
        raise AssertionError(f"memory exited with {await process.wait()} before serving")
    try:
        return process, await asyncio.wait_for(port_from_logs(), START_TIMEOUT)
    except BaseException:
        process.kill()
        await process.wait()
        raise


async def _stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    # Drain stderr so a chatty shutdown can never block on a full pipe.
    await asyncio.wait_for(process.stderr.read(), STOP_TIMEOUT)
    return await asyncio.wait_for(process.wait(), STOP_TIMEOUT)


async def _call(port: int, method: str, request):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
        return await getattr(memory_pb2_grpc.MemoryServiceStub(channel), method)(request)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    """Empty (SQLite at MEMORY_DB_PATH) or a fresh PostgreSQL database."""
    return request.getfixturevalue("pg_server").new_database() if request.param == "postgres" else ""


@pytest.mark.e2e
async def test_turns_survive_a_restart(tmp_path, database_url):
    db_path = tmp_path / "memory.sqlite3"
    first, port = await _start(db_path, database_url)
    try:
        turns = [pb.Turn(role="user", content="remember the milk", num_tokens=4), pb.Turn(role="assistant", content="noted")]
        await _call(port, "AppendTurns", pb.AppendTurnsRequest(session_id="durable", topic_id="errands", turns=turns))
    finally:
        assert await _stop(first) == 0

    second, port = await _start(db_path, database_url)
    try:
        window = await _call(port, "GetContext", pb.GetContextRequest(policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="durable"))
        assert [(t.role, t.content, t.num_tokens) for t in window.turns] == [
            ("user", "remember the milk", 4),
            ("assistant", "noted", 0),
        ]
        topics = await _call(port, "ListTopics", pb.ListTopicsRequest())
        assert [(t.topic_id, t.num_turns) for t in topics.topics] == [("errands", 2)]
        # Topic memory, the way a topic agent reads it from another session.
        topic = await _call(port, "GetContext", pb.GetContextRequest(policy=pb.MEMORY_POLICY_TOPIC_WINDOW, topic_id="errands"))
        assert [t.content for t in topic.turns] == ["remember the milk", "noted"]
    finally:
        assert await _stop(second) == 0
    assert (db_path.exists()) == (not database_url)  # PostgreSQL really was the store, not a silent SQLite


@pytest.mark.e2e
async def test_unreachable_postgresql_is_a_clear_startup_error(tmp_path):
    # Port 1 refuses at once; the password must not appear in the message.
    url = "postgresql://quartet:hunter2@127.0.0.1:1/quartet?connect_timeout=2"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quartet.services.memory",
        cwd=REPO,
        env=_env(MEMORY_LISTEN="127.0.0.1:0", DATABASE_URL=url, QUARTET_HOME=str(tmp_path), MEMORY_EMBEDDINGS="none"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode == 1
    text = stderr.decode()
    assert "cannot connect to PostgreSQL at postgresql://quartet@127.0.0.1:1/quartet" in text
    assert "hunter2" not in text
    assert not (tmp_path / "memory.sqlite3").exists()  # not silently SQLite


@pytest.mark.e2e
async def test_acknowledged_turns_survive_kill_9(tmp_path, database_url):
    """Issue 18's drill on both stores: every AppendTurns that returned is there after a SIGKILL
    that lands straight after the last acknowledgement (SQLite: WAL + synchronous=FULL)."""
    db_path = tmp_path / "memory.sqlite3"
    first, port = await _start(db_path, database_url)
    try:
        for i in range(20):
            turn = pb.Turn(role="user" if i % 2 == 0 else "assistant", content=f"turn {i}")
            await _call(port, "AppendTurns", pb.AppendTurnsRequest(session_id="killed", topic_id="t", turns=[turn]))
    finally:
        first.kill()  # SIGKILL: no shutdown hook runs
        await first.wait()
    assert first.returncode == -signal.SIGKILL

    second, port = await _start(db_path, database_url)
    try:
        window = await _call(port, "GetContext", pb.GetContextRequest(policy=pb.MEMORY_POLICY_SESSION_WINDOW, session_id="killed", k=50))
        assert [t.content for t in window.turns] == [f"turn {i}" for i in range(20)]
    finally:
        assert await _stop(second) == 0
