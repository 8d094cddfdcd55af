"""Request bodies to models or one OpenAI-shaped error: the cheapest level, no server."""

from __future__ import annotations

import json

import pytest

from quartet.services.gateway.errors import BadRequest
from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest
from quartet.services.gateway.validation import parse_body

USER = {"role": "user", "content": "hi"}


def body(**fields) -> bytes:
    return json.dumps({"model": "m", "messages": [USER], **fields}).encode()


def failure(raw: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_body(raw, ChatCompletionRequest)
    return info.value


@pytest.mark.parametrize(
    ("raw", "param", "code"),
    [
        (body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "invalid_type"),
        (body(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]), "messages[0].content[0].text", "invalid_type"),
        (body(messages=[USER, {"role": "user"}]), "messages[1].content", "invalid_value"),
        (body(messages=[{"role": "function", "content": "x"}]), "messages[0].role", "invalid_value"),
        (body(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id", "invalid_value"),
        (body(messages=[{"role": "user", "content": "x", "colour": 1}]), "messages[0].colour", "unknown_parameter"),
        (body(messages=[]), "messages", "invalid_value"),
        (body(temperature="0.5"), "temperature", "invalid_type"),
        (body(temperature=2.5), "temperature", "invalid_value"),
        (body(top_p=0), "top_p", "invalid_value"),
        (body(n=0), "n", "invalid_value"),
        (body(max_tokens=1.5), "max_tokens", "invalid_type"),
        (body(max_tokens=0), "max_tokens", "invalid_value"),
        (body(max_tokens=5, max_completion_tokens=6), "max_completion_tokens", "invalid_value"),
        (body(stop=[1]), "stop[0]", "invalid_type"),
        (body(stop=""), "stop", "invalid_value"),
        (body(stream="yes"), "stream", "invalid_type"),
        (body(stream_options={"include_usage": True}), "stream_options", "invalid_value"),
        (body(logit_bias={"hello": 1}), "logit_bias", "invalid_value"),
        (body(top_logprobs=2), "top_logprobs", "invalid_value"),
        (body(frobnicate=True), "frobnicate", "unknown_parameter"),
        (body(response_format={"type": "yaml"}), "response_format.type", "invalid_value"),
        (body(response_format={"type": "json_schema"}), "response_format.json_schema", "invalid_value"),
        (body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}), "response_format.json_schema.name", "missing_required_parameter"),
        (json.dumps({"messages": [USER]}).encode(), "model", "missing_required_parameter"),
    ],
)
def test_wrong_fields_are_named(raw: bytes, param: str, code: str) -> None:
    error = failure(raw)
    assert (error.field, error.code, error.http_status) == (param, code, 400), error.message
    assert param.split("[")[0].split(".")[-1] in error.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        ({"tool_choice": "auto", "tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"store": True}, "store"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0].type"),
    ],
)
def test_unsupported_parameters_are_refused_by_name(fields: dict, param: str) -> None:
    error = failure(body(**fields))
    assert (error.field, error.code) == (param, "unsupported_parameter"), error.message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(b"", "empty"), (b'{"model": ', "parse"), (b"[1, 2]", "JSON object"), (b"not json", "parse")],
)
def test_malformed_bodies(raw: bytes, fragment: str) -> None:
    error = failure(raw)
    assert error.code == "invalid_json" and fragment in error.message


def test_a_full_request_is_accepted() -> None:
    request = parse_body(
        body(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]},
                {"role": "user", "content": "hi", "name": "ann"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ],
            stream=True,
            stream_options={"include_usage": True},
            temperature=0,
            top_p=0.9,
            seed=-1,
            stop=["\n\n", "END"],
            max_completion_tokens=16,
            max_tokens=16,
            n=2,
            tool_choice="none",
            response_format={"type": "text"},
            user="u1",
            top_k=5,
            ignore_eos=False,
        ),
        ChatCompletionRequest,
    )
    assert request.messages[1].text() == "One\nTwo"
    assert request.completion_limit == 16
    assert request.stop_list == ["\n\n", "END"]
    assert request.include_usage
