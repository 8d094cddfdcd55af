"""A real memory server on a free port, per test, over each storage backend: a real SQLite
file, and a fresh database on a real PostgreSQL server (one server per test session).

The server is tests/conftest.py's ``memory_server``; ``pg_server`` and ``embedder`` are there too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from quartet.memory.v1 import memory_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.memory.core import MemoryCore
from quartet.services.memory.limits import Limits

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


def backend_database(backend: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """Where a memory server of ``backend`` keeps its data: a SQLite path, or a fresh PostgreSQL database's URL."""
    if backend == "sqlite":
        return str(tmp_path / "memory.sqlite3")
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture(params=BACKENDS)
async def memory(request, tmp_path, memory_server) -> AsyncIterator[MemoryHandle]:
    database = backend_database(request.param, request, tmp_path)
    # Retrieval tests mark themselves; the rest run without loading the model.
    embedder = request.getfixturevalue("embedder") if request.node.get_closest_marker("retrieval") else None
    async with memory_server(database, TEST_LIMITS, embedder) as served:
        channel = grpc.aio.insecure_channel(served.address, options=CHANNEL_OPTIONS)
        try:
            yield MemoryHandle(served.address, channel, memory_pb2_grpc.MemoryServiceStub(channel), served.core, request.param)
        finally:
            await channel.close()
