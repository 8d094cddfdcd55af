"""The engine goes away and comes back on the same port: 503 naming it, then answers again unaided.

A real engine server (the session's ``engine_core``) is stopped and started
again: a real failure, nothing faked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager

import httpx
import pytest

from quartet.services.engine.core import EngineCore
from tests.helpers import ThreadLoop
from tests.servers import EngineServer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


class RestartableEngine:
    """An engine server on a fixed port that a test can stop and start."""

    def __init__(self, core: EngineCore, engine_server) -> None:
        self.core = core
        self.engine_server = engine_server
        self.loop = ThreadLoop("engine-restartable")
        self.served: AbstractAsyncContextManager[EngineServer] | None = None
        self.address = "127.0.0.1:0"

    def start(self) -> None:
        self.served = self.engine_server(self.core, self.address, grace=0)
        self.address = self.loop.run(self.served.__aenter__()).address

    def stop(self) -> None:
        if self.served is not None:
            self.loop.run(self.served.__aexit__(None, None, None))
            self.served = None

    def close(self) -> None:
        self.stop()
        self.loop.stop()


@pytest.fixture()
def engine(engine_core: EngineCore, engine_server) -> Iterator[RestartableEngine]:
    restartable = RestartableEngine(engine_core, engine_server)
    restartable.start()
    yield restartable
    restartable.close()


def ask(http: httpx.Client, model_id: str, *, stream: bool = False) -> httpx.Response:
    body = {"model": model_id, "messages": QUESTION, "temperature": 0, "max_tokens": 4, "stream": stream}
    return http.post("/v1/chat/completions", json=body)


def test_engine_down_is_503_naming_it_then_recovers(engine: RestartableEngine, model_id: str, gateway_server) -> None:
    with gateway_server(engine.address) as gateway:
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


def test_engine_stopping_mid_stream_ends_with_an_error_event(engine: RestartableEngine, model_id: str, gateway_server) -> None:
    body = {"model": model_id, "messages": QUESTION, "stream": True, "max_tokens": 4000, "ignore_eos": True}
    with gateway_server(engine.address) as gateway:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as reply:
                assert reply.status_code == 200
                lines = reply.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
                engine.stop()
                rest = [line for line in lines if line.startswith("data: ")]
            assert rest[-1] == "data: [DONE]"
            assert '"error"' in rest[-2], rest[-3:]
