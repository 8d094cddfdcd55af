"""A probe of the engine's load (the live gateway itself is tests/servers.py's LiveGateway)."""

from __future__ import annotations

import time

import grpc
import pytest
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc


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
