"""The SSE framing on the wire, read byte for byte with httpx."""

from __future__ import annotations

import json
import re

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


def _frame(fields: dict) -> bytes:
    # OpenAI's wire form: compact JSON, UTF-8 as is, one "data: " line and a blank line per event.
    return b"data: " + json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def test_one_stream_byte_for_byte(http: httpx.Client, model_id: str, engine_probe) -> None:
    """The whole greedy stream, only its id and created normalised, against frames built from the engine's own output."""
    from quartet.engine.v1 import engine_pb2

    max_tokens = 8
    direct = engine_probe.stub.Generate(
        engine_pb2.GenerateRequest(
            chat=engine_pb2.ChatInput(messages=[engine_pb2.ChatMessage(role="user", content=QUESTION[0]["content"])]),
            sampling=engine_pb2.SamplingParams(temperature=0.0),
            stopping=engine_pb2.StoppingCriteria(max_tokens=max_tokens),
        ),
        timeout=60,
    )
    events = list(direct)
    pieces = [e.chunk.text for e in events if e.WhichOneof("event") == "chunk" and e.chunk.text]
    finish = {engine_pb2.FINISH_REASON_STOP: "stop", engine_pb2.FINISH_REASON_LENGTH: "length"}[events[-1].complete.finish_reason]
    usage = events[-1].complete.usage

    head = {"id": "ID", "object": "chat.completion.chunk", "created": 0, "model": model_id}
    tail = {"usage": None, "system_fingerprint": None}

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _frame({**head, "choices": [choice], **tail})

    expected = chunk({"role": "assistant", "content": ""})
    expected += b"".join(chunk({"content": piece}) for piece in pieces)
    expected += chunk({}, finish)
    expected += _frame(
        {
            **head,
            "choices": [],
            "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens},
            "system_fingerprint": None,
        }
    )
    expected += b"data: [DONE]\n\n"

    body = {
        "model": model_id,
        "messages": QUESTION,
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        raw = reply.read()
    ids = set(re.findall(rb'"id":"(chatcmpl-[0-9a-f]{32})"', raw))
    assert len(ids) == 1, "every chunk carries the same id"
    assert reply.headers["x-request-id"].encode() in ids
    assert len(set(re.findall(rb'"created":(\d+),', raw))) == 1
    normalised = re.sub(rb'"created":\d+,', b'"created":0,', raw.replace(ids.pop(), b"ID"))
    assert normalised == expected
