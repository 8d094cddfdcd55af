"""The router over real channels: the real engine (tests/conftest.py), a real memory server
on a temp SQLite file, and the repository's agents.yaml plus a few test-only agents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from quartet.memory.v1 import memory_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS, GrpcServer
from quartet.services.memory.core import MemoryCore
from quartet.services.memory.embedder import load_embedder
from quartet.services.memory.server import create_server as create_memory_server
from quartet.services.memory.sqlite_store import SqliteStore
from tests.router.support import Memory, Router, running_router


async def start_memory(db_path: Path) -> tuple[GrpcServer, MemoryCore]:
    # With the embedding model when installed, so retrieval agents work as deployed.
    core = MemoryCore(await SqliteStore.open(db_path), embedder=load_embedder("auto"))
    built = create_memory_server("127.0.0.1:0", core)
    await built.start()
    return built, core


@pytest.fixture(scope="module")
async def memory(tmp_path_factory) -> AsyncIterator[Memory]:
    built, core = await start_memory(tmp_path_factory.mktemp("memory") / "memory.sqlite3")
    address = f"127.0.0.1:{built.port}"
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        yield Memory(address, memory_pb2_grpc.MemoryServiceStub(channel))
    await built.stop(None)
    await core.close()


@pytest.fixture(scope="module")
async def router(engine_address: str, memory: Memory) -> AsyncIterator[Router]:
    async for handle in running_router(engine_address, memory.address):
        yield handle
