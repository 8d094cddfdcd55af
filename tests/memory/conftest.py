"""A real memory server on a free port over a real SQLite file, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from quartet.memory.v1 import memory_pb2_grpc

from services.common.grpc_server import CHANNEL_OPTIONS
from services.memory.core import MemoryCore
from services.memory.limits import Limits
from services.memory.server import create_server
from services.memory.sqlite_store import SqliteStore

# Small limits so the tests can cross them cheaply.
TEST_LIMITS = Limits(default_k=5, max_k=50, max_content_bytes=1000, max_turns_per_append=10)


@dataclass
class MemoryHandle:
    address: str
    channel: grpc.aio.Channel
    stub: memory_pb2_grpc.MemoryServiceStub
    core: MemoryCore


@pytest.fixture
async def memory(tmp_path) -> AsyncIterator[MemoryHandle]:
    store = await SqliteStore.open(tmp_path / "memory.sqlite3")
    core = MemoryCore(store, TEST_LIMITS)
    built = create_server("127.0.0.1:0", core)
    await built.start()
    address = f"127.0.0.1:{built.port}"
    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    try:
        yield MemoryHandle(address, channel, memory_pb2_grpc.MemoryServiceStub(channel), core)
    finally:
        await channel.close()
        await built.stop(None)
        await core.close()
