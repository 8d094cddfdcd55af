"""Test helpers: a live gateway (uvicorn in a thread with its own loop) and a probe of the engine's load."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import uvicorn
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc

from quartet.services.gateway.app import create_app
from quartet.services.gateway.settings import GatewaySettings


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

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def gateway_settings(engine_address: str, **overrides: object) -> GatewaySettings:
    """Settings for a test gateway: router and memory off unless a test names them."""
    fields: dict[str, object] = {"engine_address": engine_address, "router_address": "", "memory_address": ""}
    fields.update(overrides)
    return GatewaySettings(**fields)


class EngineProbe:
    """Asks the engine itself (not through the gateway) how many requests it is running."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = engine_pb2_grpc.EngineServiceStub(self.channel)

    def info(self) -> engine_pb2.GetModelInfoResponse:
        return self.stub.GetModelInfo(engine_pb2.GetModelInfoRequest(), timeout=5)

    def num_active(self) -> int:
        info = self.info()
        return info.num_running + info.num_waiting

    def wait_idle(self, timeout: float) -> float:
        """Seconds until the engine runs nothing; fails the test past ``timeout``."""
        start = time.monotonic()
        while self.num_active() > 0:
            if time.monotonic() - start > timeout:
                pytest.fail(f"the engine still runs {self.num_active()} request(s) after {timeout} s")
            time.sleep(0.05)
        return time.monotonic() - start
