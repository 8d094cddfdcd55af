"""Fernet-encrypted payloads over raw HTTP: the round trip, sealed streams and errors, and every way to fail.

The gateway here holds two keys, "new,old": a request sealed with either
opens, and every answer is sealed with the first.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.fernet import Fernet
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.servers import gateway_settings

NEW, OLD = Fernet.generate_key(), Fernet.generate_key()
SECRET = "The capital of France is the secret word"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def sealed_url(engine_address: str, gateway_server) -> Iterator[str]:
    with gateway_server(engine_address, encryption_key=f"{NEW.decode()},{OLD.decode()}", encryption_ttl_seconds=60) as live:
        yield live.url


@pytest.fixture()
def sealed(sealed_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sealed_url, timeout=60) as client:
        yield client


def seal(body: dict, key: bytes = NEW, *, at: float | None = None) -> dict:
    plaintext = json.dumps(body).encode()
    token = Fernet(key).encrypt_at_time(plaintext, int(at)) if at is not None else Fernet(key).encrypt(plaintext)
    return {"encrypted": token.decode()}


def opened(envelope: dict) -> dict:
    assert list(envelope) == ["encrypted"], envelope
    # Answers are sealed with the first key only.
    return json.loads(Fernet(NEW).decrypt(envelope["encrypted"].encode()))


def generated_tokens(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(float(v) for v in re.findall(r"^quartet_gateway_prompt_tokens_total\{[^}]*\} (\S+)$", text, re.M))


def chat(model_id: str, **fields) -> dict:
    return {"model": model_id, "messages": QUESTION, "temperature": 0, "max_tokens": 12, **fields}


def test_a_sealed_request_gets_a_sealed_answer(sealed: httpx.Client, model_id: str) -> None:
    reply = sealed.post("/v1/chat/completions", json=seal(chat(model_id)))
    assert reply.status_code == 200, reply.text
    assert "Paris" not in reply.text
    completion = ChatCompletion.model_validate(opened(reply.json()))
    assert "Paris" in completion.choices[0].message.content
    # The key being rotated out still opens requests.
    again = sealed.post("/v1/chat/completions", json=seal(chat(model_id), OLD))
    assert ChatCompletion.model_validate(opened(again.json())).choices[0].message.content == completion.choices[0].message.content


def test_each_streamed_event_is_sealed(sealed: httpx.Client, model_id: str) -> None:
    whole = ChatCompletion.model_validate(opened(sealed.post("/v1/chat/completions", json=seal(chat(model_id))).json()))
    with sealed.stream("POST", "/v1/chat/completions", json=seal(chat(model_id, stream=True))) as reply:
        assert reply.status_code == 200
        raw = reply.read().decode()
    frames = raw.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""], "only the end sentinel stays in clear"
    chunks = []
    for frame in frames[:-2]:
        assert frame.startswith("data: ") and "\n" not in frame, frame
        chunks.append(ChatCompletionChunk.model_validate(opened(json.loads(frame[len("data: "):]))))
    assert len(chunks) > 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content


def test_completions_are_sealed_too(sealed: httpx.Client, model_id: str) -> None:
    body = {"model": model_id, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 4}
    reply = sealed.post("/v1/completions", json=seal(body))
    assert "Paris" in Completion.model_validate(opened(reply.json())).choices[0].text


def test_responses_events_are_sealed_without_their_names(sealed: httpx.Client, model_id: str) -> None:
    body = {"model": model_id, "input": "Hi", "max_output_tokens": 3, "stream": True}
    with sealed.stream("POST", "/v1/responses", json=seal(body)) as reply:
        raw = reply.read().decode()
    frames = raw.split("\n\n")[:-1]
    assert all(frame.startswith('data: {"encrypted":') for frame in frames), "no event: lines, no [DONE]"
    kinds = [opened(json.loads(frame[len("data: "):]))["type"] for frame in frames]
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")


def test_errors_after_opening_are_sealed(sealed: httpx.Client) -> None:
    reply = sealed.post("/v1/chat/completions", json=seal({"model": "no/such-model", "messages": QUESTION}))
    assert reply.status_code == 404
    assert "no/such-model" not in reply.text, "the error names the model, so it must not travel in clear"
    assert opened(reply.json())["error"]["code"] == "model_not_found"


def _tampered(token: str) -> str:
    raw = bytearray(token.encode())
    middle = len(raw) // 2
    raw[middle] = ord("A") if raw[middle] != ord("A") else ord("B")
    return raw.decode()


@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param(lambda m: {"encrypted": _tampered(seal(chat(m))["encrypted"])}, id="tampered"),
        pytest.param(lambda m: seal(chat(m), Fernet.generate_key()), id="wrong-key"),
        pytest.param(lambda m: seal(chat(m), at=time.time() - 3600), id="expired"),
        pytest.param(lambda m: {"encrypted": "not a token"}, id="garbage"),
        pytest.param(lambda m: {"encrypted": "é"}, id="non-ascii"),
        pytest.param(lambda m: {"encrypted": 5}, id="not-a-string"),
    ],
)
def test_a_token_that_does_not_open_is_400_and_nothing_runs(
    sealed: httpx.Client, model_id: str, envelope, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = generated_tokens(sealed)
    body = envelope(model_id)
    for path in ("/v1/chat/completions", "/v1/completions"):
        reply = sealed.post(path, json=body)
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["message"].startswith("decryption failed") and error["code"] == "decryption_failed"
    assert generated_tokens(sealed) == before, "nothing may reach the engine"
    if isinstance(body["encrypted"], str) and len(body["encrypted"]) > 20:
        logged = " ".join(str(record.__dict__) for record in caplog.records)
        assert body["encrypted"] not in logged


def test_nothing_of_the_payload_is_logged(sealed: httpx.Client, model_id: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = seal({"model": model_id, "messages": [{"role": "user", "content": SECRET}], "max_tokens": 2})
    assert sealed.post("/v1/chat/completions", json=body).status_code == 200
    assert caplog.records, "the gateway logs the request (without its content)"
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert SECRET not in logged and body["encrypted"] not in logged


def test_an_envelope_with_other_keys_is_a_plain_bad_request(sealed: httpx.Client, model_id: str) -> None:
    reply = sealed.post("/v1/chat/completions", json={**chat(model_id), **seal(chat(model_id))})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "encrypted"


def test_without_a_key_envelopes_are_refused(http: httpx.Client, model_id: str) -> None:
    reply = http.post("/v1/chat/completions", json=seal(chat(model_id)))
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "encryption_not_configured"


def test_require_encryption_refuses_plain_bodies(engine_address: str, model_id: str, gateway_server) -> None:
    with gateway_server(engine_address, encryption_key=NEW.decode(), require_encryption=True) as live:
        plain = httpx.post(f"{live.url}/v1/chat/completions", json=chat(model_id), timeout=30)
        assert plain.status_code == 400 and plain.json()["error"]["code"] == "encryption_required"
        ok = httpx.post(f"{live.url}/v1/chat/completions", json=seal(chat(model_id, max_tokens=2)), timeout=60)
        assert ok.status_code == 200 and "choices" in opened(ok.json())


def test_a_bad_key_stops_the_gateway_at_startup_without_showing_it() -> None:
    from quartet.services.gateway.app import create_app

    with pytest.raises(ValueError) as info:
        create_app(gateway_settings("127.0.0.1:1", encryption_key="not-a-fernet-key-at-all"))
    assert "not a valid Fernet key" in str(info.value) and "not-a-fernet" not in str(info.value)
