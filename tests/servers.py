"""The one way each kind of server is started in the tests: engine, memory, router, gateway.

Every server is real: a gRPC server on "127.0.0.1:0" (a free port), the real bundled model,
a real SQLite file or PostgreSQL database, uvicorn for the gateway. tests/conftest.py exposes
each builder here as a session-scoped factory fixture (``engine_server``, ``memory_server``,
``router_server``, ``gateway_server``, ``agent_stack``), so a fixture of any scope, or a test,
can start the variant it needs and decide its lifetime with ``async with`` / ``with``:

    async with memory_server(tmp_path / "memory.sqlite3") as memory: ...   # on pytest's loop
    with hosted(memory_server(path), "memory") as memory: ...              # on a background loop
    with gateway_server(engine_address, max_body_bytes=2048) as live: ...  # uvicorn in a thread

``hosted`` runs an async server context on a ThreadLoop (tests/helpers.py), for servers that
sync clients call, or that must outlive pytest's loop's current test.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import uvicorn
from quartet.router.v1 import router_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS, GrpcServer
from quartet.services.engine.core import EngineCore
from quartet.services.engine.api.server import create_server as create_engine_server
from quartet.services.gateway.app import create_app
from quartet.services.gateway.settings import GatewaySettings
from quartet.services.memory.core import MemoryCore
from quartet.services.memory.embedder import Embedder
from quartet.services.memory.limits import Limits
from quartet.services.memory.server import create_server as create_memory_server
from quartet.services.memory.sqlite_store import SqliteStore
from quartet.services.memory.store import Store
from quartet.services.router.core import RouterCore
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.server import create_server as create_router_server
from tests.helpers import ThreadLoop

T = TypeVar("T")
FREE_PORT = "127.0.0.1:0"


# --- engine -------------------------------------------------------------------------------


@dataclass
class EngineServer:
    address: str
    server: GrpcServer
    core: EngineCore


@asynccontextmanager
async def engine_server(
    core: EngineCore, address: str = FREE_PORT, *, close_core: bool = False, grace: float | None = None
) -> AsyncIterator[EngineServer]:
    """A started engine gRPC server around ``core``; stopped (with ``grace``) on exit.

    The core belongs to the caller unless ``close_core`` (then it is closed after the server).
    grpc.aio binds to the loop it is built on: enter this on the loop that will serve it.
    """
    built = create_engine_server(address, core)
    await built.start()
    try:
        yield EngineServer(f"127.0.0.1:{built.port}", built, core)
    finally:
        try:
            await built.stop(grace)
        finally:
            if close_core:
                await core.close()


# --- memory -------------------------------------------------------------------------------


@dataclass
class MemoryServer:
    address: str
    server: GrpcServer
    core: MemoryCore


async def open_store(database: Path | str) -> Store:
    """A SQLite file for a path, a PostgreSQL database for a ``postgresql://`` URL."""
    if isinstance(database, str) and database.startswith("postgresql://"):
        from quartet.services.memory.pg_store import PostgresStore

        return await PostgresStore.open(database)
    return await SqliteStore.open(Path(database))


@asynccontextmanager
async def memory_server(
    database: Path | str | Store, limits: Limits | None = None, embedder: Embedder | None = None
) -> AsyncIterator[MemoryServer]:
    """A started memory gRPC server over ``database`` (a SQLite path, a PostgreSQL URL or an
    opened Store); on exit the server stops and its core (and store) closes."""
    store = database if isinstance(database, Store) else await open_store(database)
    core = MemoryCore(store, limits, embedder)
    try:
        built = create_memory_server(FREE_PORT, core)
        await built.start()
        try:
            yield MemoryServer(f"127.0.0.1:{built.port}", built, core)
        finally:
            await built.stop(None)
    finally:
        await core.close()


# --- router -------------------------------------------------------------------------------


@dataclass
class RouterServer:
    address: str
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceStub
    core: RouterCore


@asynccontextmanager
async def router_server(engine_address: str, memory_address: str) -> AsyncIterator[RouterServer]:
    """A started router gRPC server over the repository's agents plus the test agents
    (tests/router/support.py), with an open channel and stub to it."""
    from tests.router.support import make_registry

    core = RouterCore(make_registry(), EngineClient(engine_address), MemoryClient(memory_address))
    built = create_router_server(FREE_PORT, core)
    await built.start()
    address = f"127.0.0.1:{built.port}"
    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    try:
        yield RouterServer(address, channel, router_pb2_grpc.RouterServiceStub(channel), core)
    finally:
        await channel.close()
        await built.stop(None)
        await core.close()


# --- gateway ------------------------------------------------------------------------------


class LiveGateway:
    """``create_app(settings)`` served by uvicorn in a thread; ``url`` once started."""

    def __init__(self, settings: GatewaySettings) -> None:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start; see the log above")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    @property
    def app(self):
        return self.server.config.app

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def gateway_settings(engine_address: str, **overrides: object) -> GatewaySettings:
    """Settings for a test gateway: router and memory off unless a test names them."""
    fields: dict[str, object] = {"engine_address": engine_address, "router_address": "", "memory_address": ""}
    fields.update(overrides)
    return GatewaySettings(**fields)


@contextmanager
def gateway_server(engine_address: str, **overrides: object) -> Iterator[LiveGateway]:
    """A live gateway on a free port in front of ``engine_address``, with settings ``overrides``."""
    live = LiveGateway(gateway_settings(engine_address, **overrides))
    try:
        yield live
    finally:
        live.stop()


# --- hosting and the whole stack ----------------------------------------------------------


@contextmanager
def hosted(server: AbstractAsyncContextManager[T], name: str) -> Iterator[T]:
    """Enter an async server context on a fresh background loop; exit it there, then stop the loop."""
    loop = ThreadLoop(name)
    try:
        entered = loop.run(server.__aenter__())
        try:
            yield entered
        except BaseException as error:
            if not loop.run(server.__aexit__(type(error), error, error.__traceback__)):
                raise
        else:
            loop.run(server.__aexit__(None, None, None))
    finally:
        loop.stop()


class AgentStack:
    """Memory (a temp SQLite file) and router servers on a background loop, and a live gateway
    that uses them beside ``engine_address``; ``gateway.url`` serves the repository's agents
    (plus the router tests' agents)."""

    def __init__(self, engine_address: str, **gateway_overrides: object) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="quartet-agents-")
        self.loop = ThreadLoop("agent-stack")
        self._memory = memory_server(Path(self._folder.name) / "memory.sqlite3")
        try:
            memory = self.loop.run(self._memory.__aenter__())
            self._router = router_server(engine_address, memory.address)
            router = self.loop.run(self._router.__aenter__())
        except BaseException:
            self.loop.stop()
            self._folder.cleanup()
            raise
        self.memory_address, self.router_address, self.router_core = memory.address, router.address, router.core
        settings = gateway_settings(
            engine_address, router_address=self.router_address, memory_address=self.memory_address, **gateway_overrides
        )
        self.gateway = LiveGateway(settings)

    @property
    def app(self):
        return self.gateway.app

    def stop(self) -> None:
        self.gateway.stop()
        try:
            self.loop.run(self._router.__aexit__(None, None, None))
            self.loop.run(self._memory.__aexit__(None, None, None))
        finally:
            self.loop.stop()
            self._folder.cleanup()


@contextmanager
def agent_stack(engine_address: str, **gateway_overrides: object) -> Iterator[AgentStack]:
    stack = AgentStack(engine_address, **gateway_overrides)
    try:
        yield stack
    finally:
        stack.stop()
