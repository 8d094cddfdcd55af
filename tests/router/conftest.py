"""The router over real channels: the real engine (tests/conftest.py), a real memory server
on a temp SQLite file, and the repository's agents.yaml plus a few test-only agents.

Both servers are tests/conftest.py's (``memory_server``, ``router_server``), one of each per module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from quartet.memory.v1 import memory_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.memory.embedder import load_embedder
from tests.router.support import Memory
from tests.servers import RouterServer


@pytest.fixture(scope="module")
async def memory(tmp_path_factory, memory_server) -> AsyncIterator[Memory]:
    # With the embedding model when installed, so retrieval agents work as deployed.
    database = tmp_path_factory.mktemp("memory") / "memory.sqlite3"
    async with memory_server(database, embedder=load_embedder("auto")) as served:
        async with grpc.aio.insecure_channel(served.address, options=CHANNEL_OPTIONS) as channel:
            yield Memory(served.address, memory_pb2_grpc.MemoryServiceStub(channel))


@pytest.fixture(scope="module")
async def router(engine_address: str, memory: Memory, router_server) -> AsyncIterator[RouterServer]:
    async with router_server(engine_address, memory.address) as handle:
        yield handle
