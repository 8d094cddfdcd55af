"""Stored responses (PutResponse, GetResponse, DeleteResponse) over a real channel and a real SQLite file."""

from __future__ import annotations

import json
import sqlite3

import grpc
import pytest
from quartet.memory.v1 import memory_pb2

from quartet.services.memory.core import MemoryCore
from quartet.services.memory.limits import Limits
from quartet.services.memory.migrations import MIGRATIONS
from quartet.services.memory.responses import ResponseRecord
from quartet.services.memory.sqlite_store import SqliteStore
from quartet.services.memory.turns import Turn

BODY = json.dumps({"response": {"id": "resp_1", "output": []}, "items": [{"role": "user", "content": "hi"}]})


async def put(memory, response_id: str = "resp_1", body: str = BODY, previous: str = "") -> memory_pb2.PutResponseResponse:
    request = memory_pb2.PutResponseRequest(response_id=response_id, previous_response_id=previous, body_json=body)
    return await memory.stub.PutResponse(request)


async def test_put_get_replace_delete(memory) -> None:
    stored = await put(memory, previous="resp_0")
    assert stored.created_at > 0
    got = await memory.stub.GetResponse(memory_pb2.GetResponseRequest(response_id="resp_1"))
    assert (got.response_id, got.previous_response_id, got.body_json) == ("resp_1", "resp_0", BODY)
    assert got.created_at == pytest.approx(stored.created_at)

    await put(memory, body='{"replaced": true}')
    got = await memory.stub.GetResponse(memory_pb2.GetResponseRequest(response_id="resp_1"))
    assert json.loads(got.body_json) == {"replaced": True} and got.previous_response_id == ""

    deleted = await memory.stub.DeleteResponse(memory_pb2.DeleteResponseRequest(response_id="resp_1"))
    assert deleted.deleted
    gone = memory_pb2.GetResponseRequest(response_id="resp_1")
    for call in (memory.stub.GetResponse(gone), memory.stub.DeleteResponse(memory_pb2.DeleteResponseRequest(response_id="resp_1"))):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "resp_1" in info.value.details()


async def test_responses_do_not_touch_turns(memory) -> None:
    await memory.core.append_turns("s1", "", [Turn("user", "hello")])
    await put(memory)
    await memory.stub.DeleteResponse(memory_pb2.DeleteResponseRequest(response_id="resp_1"))
    assert [t.content for t in await memory.core.store.recent_in_session("s1", 5)] == ["hello"]


@pytest.mark.parametrize(
    ("response_id", "body", "previous", "field"),
    [
        ("", BODY, "", "response_id"),
        ("resp 1", BODY, "", "response_id"),
        ("resp_1", BODY, "bad id!", "previous_response_id"),
        ("resp_1", "not json", "", "body_json"),
        ("resp_1", "[1, 2]", "", "body_json"),
        ("resp_1", json.dumps({"x": "y" * 2000}), "", "body_json"),
    ],
)
async def test_bad_records_are_invalid_argument(memory, response_id: str, body: str, previous: str, field: str) -> None:
    memory.core.limits = Limits(max_response_bytes=1000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await put(memory, response_id, body, previous)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details()


async def test_records_survive_a_restart_and_migration_2_upgrades_an_old_file(tmp_path) -> None:
    path = tmp_path / "m.db"
    # A database made by the previous version: migration 1 only.
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        conn.executescript(MIGRATIONS[0][1])
        conn.execute("INSERT INTO schema_version VALUES (1, 0)")
        conn.execute("INSERT INTO turns (session_id, role, content, created_at) VALUES ('s', 'user', 'old', 0)")
    core = MemoryCore(await SqliteStore.open(path))
    await core.put_response(ResponseRecord("resp_9", "", BODY))
    await core.close()
    core = MemoryCore(await SqliteStore.open(path))
    try:
        assert (await core.get_response("resp_9")).body_json == BODY
        assert [t.content for t in await core.store.recent_in_session("s", 5)] == ["old"]
    finally:
        await core.close()
