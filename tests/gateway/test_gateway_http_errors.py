"""Raw HTTP: every failure is an OpenAI-shaped error with the right status and ``param``."""

from __future__ import annotations

import json

import httpx
import pytest


USER = [{"role": "user", "content": "hi"}]


def assert_error(reply: httpx.Response, status: int, *, param: str | None = None, type_: str | None = None) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    if type_ is not None:
        assert error["type"] == type_, error
    return error


def test_malformed_json_is_400(http: httpx.Client) -> None:
    reply = http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"})
    assert_error(reply, 400, type_="invalid_request_error")


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}]}, "messages[1].role"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"stop": [1, 2]}, "stop[0]"),
        ({"messages": "hello"}, "messages"),
    ],
)
def test_wrong_types_name_the_field_and_are_never_422(http: httpx.Client, model_id: str, patch: dict, param: str) -> None:
    reply = http.post("/v1/chat/completions", json={"model": model_id, "messages": USER, **patch})
    assert_error(reply, 400, param=param, type_="invalid_request_error")


def test_unknown_model_lists_the_available_ones(http: httpx.Client, model_id: str) -> None:
    error = assert_error(http.post("/v1/chat/completions", json={"model": "gpt-17", "messages": USER}), 404, param="model")
    assert "gpt-17" in error["message"] and model_id in error["message"]
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"tools": [{"type": "web_search", "function": {"name": "f", "parameters": {}}}]}, "tools[0].type"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_unsupported_or_unknown_parameters_are_400(http: httpx.Client, model_id: str, patch: dict, param: str) -> None:
    error = assert_error(http.post("/v1/chat/completions", json={"model": model_id, "messages": USER, **patch}), 400, param=param)
    assert param.split(".")[0] in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_past_the_context_is_400(http: httpx.Client, model_id: str, stream: bool) -> None:
    body = {"model": model_id, "messages": USER, "max_tokens": 10_000_000, "stream": stream}
    error = assert_error(http.post("/v1/chat/completions", json=body), 400, param="max_tokens", type_="invalid_request_error")
    assert "10000000" in error["message"] and "context" in error["message"]


def test_unknown_route_and_method_are_openai_shaped(http: httpx.Client) -> None:
    assert_error(http.get("/v1/nothing-here"), 404)
    assert_error(http.get("/v1/chat/completions"), 405)


def test_a_body_past_the_limit_is_413(engine_address: str, model_id: str, gateway_server) -> None:
    with gateway_server(engine_address, max_body_bytes=2048) as small:
        big = json.dumps({"model": model_id, "messages": [{"role": "user", "content": "x" * 4096}]})
        error = assert_error(httpx.post(f"{small.url}/v1/chat/completions", content=big), 413)
        assert "2048" in error["message"]
        fits = httpx.post(
            f"{small.url}/v1/chat/completions",
            json={"model": model_id, "messages": USER, "max_tokens": 2},
            timeout=60,
        )
        assert fits.status_code == 200, fits.text
