"""Property-based fuzz of request bodies against the live gateway: no 5xx, no hang.

Each example starts from a valid body and puts a random JSON value (or a
plausible one, to get past the first check) into random fields, known and
unknown; whole bodies of random JSON and random bytes are sent too. The
gateway caps max_tokens at 3, so whatever is accepted is answered fast by the
real model. Examples are derandomized: the run is the same every time, and a
failure prints the body that caused it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest
from quartet.services.gateway.schemas.completion_request import CompletionRequest
from quartet.services.gateway.schemas.responses_request import ResponsesRequest

#: Bounded time per request: anything slower is a hang.
REQUEST_SECONDS = 30
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
short_text = st.text(min_size=1, max_size=10)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot"]), "content": short_text | json_values},
    optional={"tool_call_id": short_text, "name": short_text | json_values},
)
# Values a client might really send, so that examples also reach the checks behind the type checks.
PLAUSIBLE = {
    "messages": st.lists(message, min_size=1, max_size=3),
    "prompt": short_text | st.lists(short_text, min_size=1, max_size=3) | st.lists(st.integers(0, 50000), min_size=1, max_size=5),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "n": st.integers(1, 3),
    "best_of": st.integers(1, 3),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "stop": short_text | st.lists(short_text, max_size=3),
    "max_tokens": st.integers(1, 5),
    "max_completion_tokens": st.integers(1, 5),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "logit_bias": st.dictionaries(st.integers(0, 60000).map(str), st.floats(-100, 100), max_size=3),
    "logprobs": st.booleans() | st.integers(0, 5),
    "top_logprobs": st.integers(0, 5),
    "echo": st.booleans(),
    "top_k": st.integers(0, 50),
    "min_p": st.floats(0, 1),
    "repetition_penalty": st.floats(0.5, 2),
    "ignore_eos": st.booleans(),
    "stop_token_ids": st.lists(st.integers(0, 60000), max_size=3),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    "tool_choice": st.sampled_from(["none", "auto"]),
    "input": short_text | st.lists(message, min_size=1, max_size=3),
    "instructions": short_text,
    "max_output_tokens": st.integers(1, 5),
    "include": st.just(["message.output_text.logprobs"]),
    "text": st.fixed_dictionaries({"format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])})}),
}


def bodies(model: type, base: dict) -> st.SearchStrategy[dict]:
    names = sorted({*model.model_fields, "frobnicate", "encrypted"})

    def value(name: str) -> st.SearchStrategy:
        return (PLAUSIBLE[name] | json_values) if name in PLAUSIBLE else json_values

    patch = st.lists(st.sampled_from(names), max_size=5, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({name: value(name) for name in chosen})
    )
    return patch.map(lambda fields: {**base, **fields})


@pytest.fixture(scope="module")
def fuzz_http(engine_address: str, gateway_server) -> Iterator[httpx.Client]:
    with gateway_server(engine_address, max_tokens_cap=3, request_timeout_seconds=REQUEST_SECONDS) as live:
        with httpx.Client(base_url=live.url, timeout=REQUEST_SECONDS + 5) as client:
            yield client


def check(http: httpx.Client, path: str, content: bytes) -> None:
    with http.stream("POST", path, content=content, headers={"content-type": "application/json"}) as reply:
        raw = reply.read()
    assert reply.status_code < 500, (content[:300], reply.status_code, raw[:300])
    event(f"HTTP {reply.status_code}")
    if reply.status_code != 200:
        error = json.loads(raw)["error"]
        assert error["message"] and reply.status_code in (400, 404), (content[:300], error)
        return
    if not reply.headers["content-type"].startswith("text/event-stream"):
        return
    frames = raw.decode().split("\n\n")
    assert frames[-1] == "", frames[-2:]
    payloads = [frame.rsplit("data: ", 1)[-1] for frame in frames[:-1]]
    if path == "/v1/responses":
        # Named events, no [DONE]: the last one is the finished response.
        kinds = [json.loads(payload)["type"] for payload in payloads]
        assert kinds[-1] in ("response.completed", "response.incomplete") and "error" not in kinds, (content[:300], kinds)
        return
    assert payloads[-1] == "[DONE]", payloads[-2:]
    for payload in payloads[:-1]:
        assert "error" not in json.loads(payload), (content[:300], payload)


@FUZZ
@given(data=st.data())
def test_chat_bodies(fuzz_http: httpx.Client, model_id: str, data: st.DataObject) -> None:
    base = {"model": model_id, "messages": [{"role": "user", "content": "hi"}]}
    body = data.draw(bodies(ChatCompletionRequest, base), label="body")
    check(fuzz_http, "/v1/chat/completions", json.dumps(body).encode())


@FUZZ
@given(data=st.data())
def test_completions_bodies(fuzz_http: httpx.Client, model_id: str, data: st.DataObject) -> None:
    body = data.draw(bodies(CompletionRequest, {"model": model_id, "prompt": "Hello"}), label="body")
    check(fuzz_http, "/v1/completions", json.dumps(body).encode())


@FUZZ
@given(data=st.data())
def test_responses_bodies(fuzz_http: httpx.Client, model_id: str, data: st.DataObject) -> None:
    body = data.draw(bodies(ResponsesRequest, {"model": model_id, "input": "Hello"}), label="body")
    check(fuzz_http, "/v1/responses", json.dumps(body).encode())


@settings(FUZZ, max_examples=40)
@given(
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/responses"]),
    content=json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64),
)
def test_arbitrary_bodies(fuzz_http: httpx.Client, path: str, content: bytes) -> None:
    check(fuzz_http, path, content)
