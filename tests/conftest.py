"""Fixtures shared by every test folder: the real engine, loaded once per session.

``engine_core`` is the EngineCore with the bundled model; ``engine_address`` is
"127.0.0.1:PORT" of a real engine gRPC server around it, hosted on a
background event loop (tests/helpers.py::ThreadLoop) so sync and async tests
can both call it. The core is loop-agnostic: async tests may also use it
directly from pytest's loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quartet.services.common.grpc_server import GrpcServer
from quartet.services.engine.core import EngineCore
from quartet.services.engine.model_cache import ensure_bundled_model
from quartet.services.engine.server import create_server
from quartet.services.engine.settings import EngineSettings
from tests.helpers import ThreadLoop


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
    async def start() -> GrpcServer:
        built = create_server("127.0.0.1:0", engine_core)  # grpc.aio binds to the loop it is built on
        await built.start()
        return built

    loop = ThreadLoop("engine-server")
    try:
        built = loop.run(start())
        yield f"127.0.0.1:{built.port}"
        loop.run(built.stop(None))
    finally:
        loop.stop()
