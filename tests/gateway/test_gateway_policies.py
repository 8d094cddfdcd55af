"""The operator's policies on a live gateway: API keys, the per-key rate limit, CORS and MAX_TOKENS_CAP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest


ORIGIN = "https://app.example"
QUESTION = [{"role": "user", "content": "Tell me a long story."}]


@pytest.fixture(scope="module")
def guarded_url(engine_address: str, tmp_path_factory: pytest.TempPathFactory, gateway_server) -> Iterator[str]:
    keys_file: Path = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text("# team keys\nsk-file-one\n\nsk-file-two  # the CI's\n")
    with gateway_server(
        engine_address, api_keys="sk-alpha, sk-beta", api_keys_file=keys_file, cors_origins=ORIGIN, max_tokens_cap=8
    ) as live:
        yield live.url


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.mark.parametrize("key", ["sk-alpha", "sk-beta", "sk-file-one", "sk-file-two"])
def test_known_keys_are_let_in(guarded_url: str, model_id: str, key: str) -> None:
    assert [m.id for m in sdk(guarded_url, key).models.list().data] == [model_id]


@pytest.mark.parametrize("key", ["sk-wrong", "sk-alph", "sk-alpha2", "# team keys"])
def test_wrong_keys_are_401(guarded_url: str, model_id: str, key: str) -> None:
    client = sdk(guarded_url, key)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=2)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.completions.create(model=model_id, prompt="x", max_tokens=2)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "sk-alpha"}, {"Authorization": "Basic sk-alpha"}, {"Authorization": "Bearer"}])
def test_no_bearer_key_is_401_openai_shaped(guarded_url: str, headers: dict) -> None:
    reply = httpx.post(f"{guarded_url}/v1/chat/completions", json={}, headers=headers, timeout=10)
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in error["message"]


def test_health_metrics_and_docs_are_open(guarded_url: str) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert httpx.get(f"{guarded_url}{path}", timeout=10).status_code == 200, path
    assert httpx.get(f"{guarded_url}/bench", timeout=10).status_code == 401


def test_cors_preflight_and_response_headers(guarded_url: str, model_id: str) -> None:
    preflight = httpx.options(
        f"{guarded_url}/v1/chat/completions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200, "a preflight carries no key and must not need one"
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

    refused = httpx.options(
        f"{guarded_url}/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers

    reply = httpx.get(f"{guarded_url}/v1/models", headers={"Origin": ORIGIN, "Authorization": "Bearer sk-alpha"}, timeout=10)
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in reply.headers["access-control-expose-headers"].lower()


def test_no_cors_headers_unless_configured(gateway_url: str) -> None:
    reply = httpx.get(f"{gateway_url}/v1/models", headers={"Origin": ORIGIN}, timeout=10)
    assert "access-control-allow-origin" not in reply.headers


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": QUESTION, "max_tokens": 9}, "max_tokens"),
        ("/v1/chat/completions", {"messages": QUESTION, "max_completion_tokens": 9}, "max_completion_tokens"),
        ("/v1/completions", {"prompt": "Once", "max_tokens": 9}, "max_tokens"),
    ],
)
def test_max_tokens_past_the_cap_is_400(guarded_url: str, model_id: str, path: str, body: dict, param: str) -> None:
    reply = httpx.post(f"{guarded_url}{path}", json={"model": model_id, **body}, headers={"Authorization": "Bearer sk-alpha"}, timeout=30)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param, reply.text
    assert "8" in reply.json()["error"]["message"]


def test_the_cap_is_the_limit_when_none_is_asked(guarded_url: str, model_id: str) -> None:
    client = sdk(guarded_url, "sk-alpha")
    chat = client.chat.completions.create(model=model_id, messages=QUESTION, extra_body={"ignore_eos": True})
    assert chat.usage.completion_tokens == 8 and chat.choices[0].finish_reason == "length"
    # Completions default to 16 tokens; the cap is lower.
    text = client.completions.create(model=model_id, prompt="Once upon a time", extra_body={"ignore_eos": True})
    assert text.usage.completion_tokens == 8


def test_rate_limit_is_per_key_with_retry_after(engine_address: str, gateway_server) -> None:
    with gateway_server(engine_address, api_keys="sk-one,sk-two", rate_limit_per_minute=6, rate_limit_burst=2) as live:
        one, two = sdk(live.url, "sk-one"), sdk(live.url, "sk-two")
        one.models.list()
        one.models.list()
        with pytest.raises(openai.RateLimitError) as info:
            one.models.list()
        retry_after = int(info.value.response.headers["retry-after"])
        assert 1 <= retry_after <= 10, "one request per 10 s: the next token is at most 10 s away"
        assert info.value.code == "rate_limit_exceeded"
        two.models.list()  # another key has its own bucket
        # A wrong key is refused before it could spend anyone's budget.
        with pytest.raises(openai.AuthenticationError):
            sdk(live.url, "sk-nobody").models.list()


def test_without_keys_the_rate_limit_is_per_client_address(engine_address: str, gateway_server) -> None:
    with gateway_server(engine_address, rate_limit_per_minute=1, rate_limit_burst=1) as live:
        assert httpx.get(f"{live.url}/v1/models", timeout=10).status_code == 200
        limited = httpx.get(f"{live.url}/v1/models", timeout=10)
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 200, "health is never limited"


def test_metrics_can_require_the_api_key(engine_address: str, gateway_server) -> None:
    with gateway_server(engine_address, api_keys="sk-alpha", metrics_require_key=True) as live:
        assert httpx.get(f"{live.url}/metrics", timeout=10).status_code == 401
        wrong = httpx.get(f"{live.url}/metrics", headers={"Authorization": "Bearer sk-nope"}, timeout=10)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        right = httpx.get(f"{live.url}/metrics", headers={"Authorization": "Bearer sk-alpha"}, timeout=10)
        assert right.status_code == 200 and "quartet_gateway" in right.text
        assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 200  # health stays open for probes
