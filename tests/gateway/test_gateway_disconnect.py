"""A client that goes away stops its generation in the engine (GetModelInfo's counts return to 0)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.gateway.live import EngineProbe

# Long enough that only a cancellation can end it within the test's time.
ENDLESS = {"max_tokens": 4000, "ignore_eos": True, "temperature": 0}
PROMPT = [{"role": "user", "content": "Count from one to one thousand."}]


def test_closing_a_stream_cancels_the_engine_request(gateway_url: str, model_id: str, engine_probe: EngineProbe) -> None:
    engine_probe.wait_idle(timeout=30)
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json={"model": model_id, "messages": PROMPT, "stream": True, **ENDLESS}) as reply:
            assert reply.status_code == 200
            lines = reply.iter_lines()
            received = [line for line, _ in zip(lines, range(8)) if line.startswith("data: ")]
            assert received, "expected some chunks before hanging up"
            assert engine_probe.num_active() == 1
        # Leaving the block closes the connection mid-stream.
    assert engine_probe.wait_idle(timeout=10) < 10


def test_giving_up_on_a_whole_answer_cancels_it_too(gateway_url: str, model_id: str, engine_probe: EngineProbe) -> None:
    engine_probe.wait_idle(timeout=30)
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(
            httpx.post,
            f"{gateway_url}/v1/chat/completions",
            json={"model": model_id, "messages": PROMPT, **ENDLESS},
            timeout=httpx.Timeout(60, read=3),
        )
        deadline = time.monotonic() + 10
        while engine_probe.num_active() == 0:
            assert time.monotonic() < deadline and not reply.done(), "the request never reached the engine"
            time.sleep(0.05)
        with pytest.raises(httpx.ReadTimeout):
            reply.result()
    # The client hung up on a non-streaming request: the gateway must notice and cancel.
    assert engine_probe.wait_idle(timeout=10) < 10


COUNTING = {"prompt": ["Count from one to one thousand:", "List every prime number:"], **ENDLESS}


def test_closing_a_completions_stream_cancels_every_prompt(gateway_url: str, model_id: str, engine_probe: EngineProbe) -> None:
    engine_probe.wait_idle(timeout=30)
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        with http.stream("POST", "/v1/completions", json={"model": model_id, "stream": True, **COUNTING}) as reply:
            assert reply.status_code == 200
            received = [line for line, _ in zip(reply.iter_lines(), range(8)) if line.startswith("data: ")]
            assert received, "expected some chunks before hanging up"
            assert engine_probe.num_active() == 2, "one engine request per prompt"
    assert engine_probe.wait_idle(timeout=10) < 10


def test_giving_up_on_a_whole_completion_cancels_it(gateway_url: str, model_id: str, engine_probe: EngineProbe) -> None:
    engine_probe.wait_idle(timeout=30)
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(
            httpx.post,
            f"{gateway_url}/v1/completions",
            json={"model": model_id, **COUNTING},
            timeout=httpx.Timeout(60, read=3),
        )
        deadline = time.monotonic() + 10
        while engine_probe.num_active() < 2:
            assert time.monotonic() < deadline and not reply.done(), "the prompts never all reached the engine"
            time.sleep(0.05)
        with pytest.raises(httpx.ReadTimeout):
            reply.result()
    assert engine_probe.wait_idle(timeout=10) < 10


def test_closing_a_responses_stream_cancels_it(gateway_url: str, model_id: str, engine_probe: EngineProbe) -> None:
    engine_probe.wait_idle(timeout=30)
    body = {"model": model_id, "input": "Count from one to one thousand.", "stream": True, "max_output_tokens": 4000, "ignore_eos": True}
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        with http.stream("POST", "/v1/responses", json=body) as reply:
            assert reply.status_code == 200
            received = [line for line, _ in zip(reply.iter_lines(), range(16)) if line.startswith("data: ")]
            assert any("output_text.delta" in line for line in received)
            assert engine_probe.num_active() == 1
    assert engine_probe.wait_idle(timeout=10) < 10
