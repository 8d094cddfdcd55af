"""The engine goes away and comes back on the same port: 503 naming it, then answers again unaided.

A real engine server (the session's ``engine_core``) is stopped and started
again: a real failure, nothing faked.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from quartet.services.common.grpc_server import GrpcServer
from quartet.services.engine.core import EngineCore
from quartet.services.engine.server import create_server
from tests.gateway.live import LiveGateway, gateway_settings
from tests.helpers import ThreadLoop

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


class RestartableEngine:
    """An engine server on a fixed port that a test can stop and start."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.loop = ThreadLoop("engine-restartable")
        self.built: GrpcServer | None = None
        self.address = "127.0.0.1:0"

    def start(self) -> None:
        async def start() -> GrpcServer:
            built = create_server(self.address, self.core)
            await built.start()
            return built

        self.built = self.loop.run(start())
        self.address = f"127.0.0.1:{self.built.port}"

    def stop(self) -> None:
        if self.built is not None:
            self.loop.run(self.built.stop(0))
            self.built = None

    def close(self) -> None:
        self.stop()
        self.loop.stop()


@pytest.fixture()
def engine(engine_core: EngineCore) -> Iterator[RestartableEngine]:
    restartable = RestartableEngine(engine_core)
    restartable.start()
    yield restartable
    restartable.close()


def ask(http: httpx.Client, model_id: str, *, stream: bool = False) -> httpx.Response:
    body = {"model": model_id, "messages": QUESTION, "temperature": 0, "max_tokens": 4, "stream": stream}
    return http.post("/v1/chat/completions", json=body)


def test_engine_down_is_503_naming_it_then_recovers(engine: RestartableEngine, model_id: str) -> None:
    gateway = LiveGateway(gateway_settings(engine.address))
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            assert ask(http, model_id).status_code == 200

            engine.stop()
            for stream in (False, True):
                reply = ask(http, model_id, stream=stream)
                assert reply.status_code == 503, reply.text
                assert int(reply.headers["retry-after"]) >= 1, "a 503 says when to try again"
                error = reply.json()["error"]
                assert error["type"] == "service_unavailable"
                assert error["message"].startswith(f"engine unavailable at {engine.address}: ")
                assert reply.elapsed.total_seconds() < 3, "a down engine must fail fast"
            assert http.get("/v1/models").status_code == 503
            health = http.get("/healthz")
            assert health.status_code == 503 and health.json()["failing"] == ["engine"]

            engine.start()
            # Back on the same port: the very next request is answered, without restarting the gateway.
            reply = ask(http, model_id)
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"]
            assert ask(http, model_id, stream=True).text.endswith("data: [DONE]\n\n")
            assert http.get("/healthz").status_code == 200
    finally:
        gateway.stop()


def test_engine_stopping_mid_stream_ends_with_an_error_event(engine: RestartableEngine, model_id: str) -> None:
    gateway = LiveGateway(gateway_settings(engine.address))
    body = {"model": model_id, "messages": QUESTION, "stream": True, "max_tokens": 4000, "ignore_eos": True}
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as reply:
                assert reply.status_code == 200
                lines = reply.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
                engine.stop()
                rest = [line for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]"
            assert '"error"' in rest[-2], rest[-3:]
    finally:
        gateway.stop()
