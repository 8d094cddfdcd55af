"""A generation past ``request_timeout_seconds`` is cut: 504 before the answer started, an error event after."""

from __future__ import annotations

import json

import httpx

from tests.gateway.live import EngineProbe

ENDLESS = {"max_tokens": 4000, "ignore_eos": True, "temperature": 0}
PROMPT = [{"role": "user", "content": "Count from one to one thousand."}]


def test_a_slow_generation_hits_the_deadline(
    engine_address: str, model_id: str, engine_probe: EngineProbe, gateway_server
) -> None:
    engine_probe.wait_idle(timeout=30)
    with gateway_server(engine_address, request_timeout_seconds=1.0) as gateway:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            reply = http.post("/v1/chat/completions", json={"model": model_id, "messages": PROMPT, **ENDLESS})
            assert reply.status_code == 504, reply.text
            assert reply.json()["error"]["type"] == "timeout_error"
            assert reply.elapsed.total_seconds() < 5
            engine_probe.wait_idle(timeout=10)

            completion = http.post("/v1/completions", json={"model": model_id, "prompt": "Count:", **ENDLESS})
            assert completion.status_code == 504, completion.text
            assert completion.json()["error"]["type"] == "timeout_error"
            engine_probe.wait_idle(timeout=10)

            body = {"model": model_id, "messages": PROMPT, "stream": True, **ENDLESS}
            with http.stream("POST", "/v1/chat/completions", json=body) as streamed:
                assert streamed.status_code == 200
                events = [line[len("data: "):] for line in streamed.iter_lines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["error"]["type"] == "timeout_error"
            assert len(events) > 3, "some tokens came before the deadline"
            engine_probe.wait_idle(timeout=10)
