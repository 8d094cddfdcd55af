"""``/metrics`` contents after real requests, and ``/bench``, on a gateway of their own (fresh counters)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.live import EngineProbe

CHAT = "/v1/chat/completions"
QUESTION = [{"role": "user", "content": "Count to ten."}]


@pytest.fixture(scope="module")
def fresh(engine_address: str, gateway_server) -> Iterator[httpx.Client]:
    with gateway_server(engine_address, request_timeout_seconds=3.0, bench_max_count=4, bench_max_tokens=64) as live:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            yield client


def samples(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_tokens_and_latencies_are_counted(fresh: httpx.Client, model_id: str) -> None:
    before = samples(fresh)
    body = {"model": model_id, "messages": QUESTION, "max_tokens": 4, "ignore_eos": True, "temperature": 0}
    usage = fresh.post(CHAT, json=body).json()["usage"]
    with fresh.stream("POST", "/v1/completions", json={"model": model_id, "prompt": "One, two,", "max_tokens": 3, "stream": True}) as reply:
        reply.read()
    assert fresh.post(CHAT, json={**body, "model": "no/such"}).status_code == 404
    assert fresh.get(f"/v1/models/{model_id}").status_code == 200
    assert fresh.get("/no/such/path").status_code == 404
    after = samples(fresh)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("quartet_gateway_requests_total", route=CHAT, method="POST", status="200") == 1
    assert delta("quartet_gateway_requests_total", route=CHAT, method="POST", status="404") == 1
    assert delta("quartet_gateway_errors_total", route=CHAT, status="404") == 1
    assert delta("quartet_gateway_errors_total", route=CHAT, status="200") == 0
    assert delta("quartet_gateway_requests_total", route="/v1/completions", method="POST", status="200") == 1
    # Routes are labelled by their template, and unknown paths all share one label.
    assert delta("quartet_gateway_requests_total", route="/v1/models/{model_id:path}", method="GET", status="200") == 1
    assert delta("quartet_gateway_requests_total", route="unmatched", method="GET", status="404") == 1

    assert delta("quartet_gateway_prompt_tokens_total", route=CHAT) == usage["prompt_tokens"]
    assert delta("quartet_gateway_completion_tokens_total", route=CHAT) == 4
    assert delta("quartet_gateway_completion_tokens_total", route="/v1/completions") == 3
    for histogram in ("quartet_gateway_time_to_first_token_seconds", "quartet_gateway_time_per_output_token_seconds"):
        assert delta(f"{histogram}_count", route=CHAT) == 1, histogram
        assert 0 < delta(f"{histogram}_sum", route=CHAT) < 30, histogram
    assert value(after, "quartet_gateway_requests_in_flight", route=CHAT) == 0


def test_in_flight_and_a_failure_inside_a_stream(fresh: httpx.Client, model_id: str, engine_probe: EngineProbe) -> None:
    engine_probe.wait_idle(timeout=30)
    before = samples(fresh)
    body = {"model": model_id, "messages": QUESTION, "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with fresh.stream("POST", CHAT, json=body) as reply:
        lines = reply.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        assert value(samples(fresh), "quartet_gateway_requests_in_flight", route=CHAT) == 1
        events = [line for line in lines if line.startswith("data: ")]
    # The gateway's deadline (3 s) cut the stream: the 200 was already sent, the error is counted as 504.
    assert json.loads(events[-2][len("data: "):])["error"]["type"] == "timeout_error"
    after = samples(fresh)
    assert value(after, "quartet_gateway_requests_in_flight", route=CHAT) == 0
    assert value(after, "quartet_gateway_errors_total", route=CHAT, status="504") - value(
        before, "quartet_gateway_errors_total", route=CHAT, status="504"
    ) == 1
    engine_probe.wait_idle(timeout=10)


def test_bench_measures_concurrent_decoding(fresh: httpx.Client, model_id: str) -> None:
    reply = fresh.get("/bench", params={"count": 3, "max_tokens": 8})
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert (result["model"], result["count"], result["max_tokens"]) == (model_id, 3, 8)
    assert result["total_completion_tokens"] == 24 and len(result["requests"]) == 3
    assert all(r["completion_tokens"] == 8 and r["prompt_tokens"] > 0 for r in result["requests"])
    assert result["aggregate_decode_tokens_per_second"] > 0 and result["output_tokens_per_second"] > 0
    # Decoding only (prefill left out) is faster than the whole run's output rate.
    assert result["aggregate_decode_tokens_per_second"] >= result["output_tokens_per_second"] * 0.9
    assert 0 < result["mean_time_to_first_token_seconds"] < result["wall_seconds"]
    assert value(samples(fresh), "quartet_gateway_completion_tokens_total", route="/bench") >= 24


@pytest.mark.parametrize(
    ("params", "param"),
    [({"count": 5}, "count"), ({"max_tokens": 65}, "max_tokens"), ({"count": 0}, "count"), ({"count": "many"}, "count")],
)
def test_bench_parameters_are_capped(fresh: httpx.Client, params: dict, param: str) -> None:
    reply = fresh.get("/bench", params=params)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_one_bench_at_a_time(fresh: httpx.Client, engine_probe: EngineProbe) -> None:
    engine_probe.wait_idle(timeout=30)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(fresh.get, "/bench", params={"count": 2, "max_tokens": 12})
        deadline = time.monotonic() + 10
        while engine_probe.num_active() == 0:
            assert time.monotonic() < deadline, "the first bench never reached the engine"
            time.sleep(0.02)
        second = fresh.get("/bench", params={"count": 1, "max_tokens": 1})
        assert second.status_code == 429 and "already running" in second.json()["error"]["message"]
        assert first.result().status_code == 200
