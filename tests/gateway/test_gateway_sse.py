"""The SSE framing on the wire, read byte for byte with httpx."""

from __future__ import annotations

import json

import httpx
from openai.types.chat import ChatCompletionChunk

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def read_events(http: httpx.Client, body: dict) -> tuple[httpx.Response, str]:
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        raw = reply.read().decode()
    return reply, raw


def test_events_are_data_lines_ending_with_done(http: httpx.Client, model_id: str) -> None:
    reply, raw = read_events(http, {"model": model_id, "messages": QUESTION, "stream": True, "temperature": 0, "max_tokens": 12})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert raw.endswith("data: [DONE]\n\n")
    events = raw.split("\n\n")
    assert events[-1] == ""
    events = events[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events), raw[:400]
    assert events.count("data: [DONE]") == 1 and events[-1] == "data: [DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(event[len("data: "):])) for event in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks].count(None) == len(chunks) - 1
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # Usage was not asked for: no chunk carries it.
    assert all("usage" not in json.loads(e[6:]) or json.loads(e[6:])["usage"] is None for e in events[:-1])


def test_include_usage_adds_a_last_chunk_with_empty_choices(http: httpx.Client, model_id: str) -> None:
    body = {
        "model": model_id,
        "messages": QUESTION,
        "stream": True,
        "temperature": 0,
        "max_tokens": 7,
        "stream_options": {"include_usage": True},
    }
    _, raw = read_events(http, body)
    events = raw.split("\n\n")[:-1]
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][len("data: "):])
    assert last["choices"] == []
    usage = last["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 7
    finish = json.loads(events[-3][len("data: "):])
    assert finish["choices"][0]["finish_reason"] in ("stop", "length") and finish["choices"][0]["delta"] == {}


def test_a_refused_stream_is_an_http_error_not_an_event(http: httpx.Client, model_id: str) -> None:
    reply, raw = read_events(http, {"model": model_id, "messages": QUESTION, "stream": True, "max_tokens": 10_000_000})
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("application/json")
    assert "max_tokens" in json.loads(raw)["error"]["message"]
