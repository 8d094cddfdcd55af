"""A whole agent stack for gateway tests: memory (temp SQLite) and router servers on a
background loop, and a live gateway that uses them, beside the real engine."""

from __future__ import annotations

import tempfile
from pathlib import Path

from quartet.services.common.grpc_server import GrpcServer
from quartet.services.memory.core import MemoryCore
from quartet.services.memory.server import create_server as create_memory_server
from quartet.services.memory.sqlite_store import SqliteStore
from quartet.services.router.core import RouterCore
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.server import create_server as create_router_server
from tests.gateway.live import LiveGateway, gateway_settings
from tests.helpers import ThreadLoop
from tests.router.support import make_registry


class AgentStack:
    """``gateway.url`` serves the repository's agents (plus the router tests' agents)."""

    def __init__(self, engine_address: str, **gateway_overrides: object) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="quartet-agents-")
        self.loop = ThreadLoop("agent-stack")
        self.memory_address, self.router_address = self.loop.run(self._start(engine_address))
        settings = gateway_settings(
            engine_address, router_address=self.router_address, memory_address=self.memory_address, **gateway_overrides
        )
        self.gateway = LiveGateway(settings)

    async def _start(self, engine_address: str) -> tuple[str, str]:
        self._memory_core = MemoryCore(await SqliteStore.open(Path(self._folder.name) / "memory.sqlite3"))
        self._memory: GrpcServer = create_memory_server("127.0.0.1:0", self._memory_core)
        await self._memory.start()
        memory_address = f"127.0.0.1:{self._memory.port}"
        self.router_core = RouterCore(make_registry(), EngineClient(engine_address), MemoryClient(memory_address))
        self._router: GrpcServer = create_router_server("127.0.0.1:0", self.router_core)
        await self._router.start()
        return memory_address, f"127.0.0.1:{self._router.port}"

    async def _stop(self) -> None:
        await self._router.stop(None)
        await self.router_core.close()
        await self._memory.stop(None)
        await self._memory_core.close()

    @property
    def app(self):
        return self.gateway.server.config.app

    def stop(self) -> None:
        self.gateway.stop()
        try:
            self.loop.run(self._stop())
        finally:
            self.loop.stop()
            self._folder.cleanup()
