"""Answers that run into their token limit, with the official SDK against the real engine (issue 25).

Two holes a user found: a Responses stream cut by ``max_output_tokens`` must still stream
its text in the documented order and end with ``response.incomplete``; and output under
a JSON Schema (or JSON object, or a forced tool call) must parse however small the
budget, on Chat Completions, Completions and Responses, streamed or not. When the
budget forces the ending, the choice says so in ``warnings``; a budget below the shortest
valid output is a 400 naming the limit parameter.
"""

from __future__ import annotations

import json
import random

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.gateway.test_gateway_responses import SEQUENCE

PROMPT = "Describe one product as JSON with its name and price."
PRODUCT = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
    "additionalProperties": False,
}
CHAT_FORMAT = {"type": "json_schema", "json_schema": {"name": "product", "schema": PRODUCT}}
TEXT_FORMAT = {"format": {"type": "json_schema", "name": "product", "schema": PRODUCT}}
STREAM_ORDER = [*SEQUENCE, "response.incomplete"]
#: Budgets from just above the shortest valid product (10 tokens) to a few sentences.
BUDGETS = [random.Random(25).randint(10, 40) for _ in range(8)]


class Product(BaseModel):
    name: str
    price: float


def _product(text: str) -> dict:
    value = json.loads(text)
    jsonschema.validate(value, PRODUCT)
    return value


def _collapsed(types: list[str]) -> list[str]:
    return [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]


@pytest.mark.parametrize("max_output_tokens", [1, 5, 20])
def test_responses_stream_cut_by_its_limit_streams_its_text(client: openai.OpenAI, model_id: str, max_output_tokens: int) -> None:
    kwargs = dict(model=model_id, input="Write a long story about a dragon.", temperature=0, max_output_tokens=max_output_tokens)
    whole = client.responses.create(**kwargs)
    events = list(client.responses.create(stream=True, **kwargs))
    assert _collapsed([e.type for e in events]) == STREAM_ORDER
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    [done] = [e for e in events if e.type == "response.output_text.done"]
    last = events[-1].response
    assert deltas and deltas == done.text == last.output_text == whole.output_text
    assert last.status == whole.status == "incomplete"
    assert last.incomplete_details.reason == whole.incomplete_details.reason == "max_output_tokens"
    assert last.usage.output_tokens == max_output_tokens and last.output[0].status == "incomplete"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_chat_and_completions_streams_cut_by_their_limit_stream_their_text(client: openai.OpenAI, model_id: str) -> None:
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]
    whole = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=12)
    chunks = list(client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=12, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert whole.choices[0].finish_reason == chunks[-1].choices[0].finish_reason == "length"
    text = client.completions.create(model=model_id, prompt="Once upon a time", temperature=0, max_tokens=12)
    pieces = list(client.completions.create(model=model_id, prompt="Once upon a time", temperature=0, max_tokens=12, stream=True))
    assert "".join(p.choices[0].text for p in pieces) == text.choices[0].text
    assert text.choices[0].finish_reason == pieces[-1].choices[0].finish_reason == "length"


def test_responses_parse_with_a_float_field_parses(client: openai.OpenAI, model_id: str) -> None:
    # The reported failure: the model wrote digits until max_output_tokens ran out.
    for seed, budget in enumerate([80, 30, 14]):
        response = client.responses.parse(
            model=model_id, input=PROMPT, text_format=Product, max_output_tokens=budget, temperature=1.0, top_p=1.0
        )
        assert isinstance(response.output_parsed, Product), (seed, response.output_text)
        if response.status == "incomplete":
            assert response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_json_schema_always_parses_for_small_budgets(client: openai.OpenAI, model_id: str, stream: bool) -> None:
    closed = 0
    for seed, budget in enumerate(BUDGETS):
        kwargs = dict(
            model=model_id,
            messages=[{"role": "user", "content": PROMPT}],
            response_format=CHAT_FORMAT,
            max_tokens=budget,
            temperature=1.0,
            seed=seed,
        )
        if stream:
            chunks = list(client.chat.completions.create(stream=True, **kwargs))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            final = chunks[-1].choices[0]
        else:
            reply = client.chat.completions.create(**kwargs)
            text, final = reply.choices[0].message.content, reply.choices[0]
        _product(text)
        warnings = getattr(final, "warnings", None)
        if warnings:
            closed += 1
            assert final.finish_reason == "length" and warnings[0]["code"] == "constraint_closed"
        assert reply_tokens_fit(client, model_id, text, budget)
    assert closed > 0  # the smallest budgets must have needed the ending


def reply_tokens_fit(client: openai.OpenAI, model_id: str, text: str, budget: int) -> bool:
    """The text is at most ``budget`` tokens (counted by the gateway's own tokenizer path: a completions echo)."""
    echoed = client.completions.create(model=model_id, prompt=text, max_tokens=1, echo=True, temperature=0)
    return echoed.usage.prompt_tokens <= budget + 1  # +1: the tokenizer's BOS, if any


@pytest.mark.parametrize("stream", [False, True])
def test_completions_response_format_always_parses(client: openai.OpenAI, model_id: str, stream: bool) -> None:
    for seed, budget in enumerate(BUDGETS[:5]):
        kwargs = dict(
            model=model_id,
            prompt=PROMPT + "\n",
            max_tokens=budget,
            temperature=1.0,
            seed=seed,
            extra_body={"response_format": CHAT_FORMAT},
        )
        if stream:
            text = "".join(p.choices[0].text for p in client.completions.create(stream=True, **kwargs))
        else:
            text = client.completions.create(**kwargs).choices[0].text
        _product(text)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_json_schema_always_parses(client: openai.OpenAI, model_id: str, stream: bool) -> None:
    for seed, budget in enumerate(BUDGETS[:5]):
        kwargs = dict(model=model_id, input=PROMPT, text=TEXT_FORMAT, max_output_tokens=budget, temperature=1.0)
        if stream:
            events = list(client.responses.create(stream=True, **kwargs))
            response = events[-1].response
            assert _collapsed([e.type for e in events])[-1] in ("response.completed", "response.incomplete")
        else:
            response = client.responses.create(**kwargs)
        _product(response.output_text)
        if getattr(response, "warnings", None):
            assert response.status == "incomplete" and response.warnings[0]["code"] == "constraint_closed"


def test_json_object_and_forced_tool_calls_close_too(client: openai.OpenAI, model_id: str) -> None:
    for budget in (6, 9, 15):
        reply = client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
            response_format={"type": "json_object"},
            max_tokens=budget,
            temperature=1.0,
            seed=budget,
        )
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "What is the weather in the largest city of a country you like?"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=18,  # the shortest call envelope, {"name": "get_weather", "arguments": {"city": ""}}, is 16
        temperature=1.0,
        seed=3,
    )
    [call] = reply.choices[0].message.tool_calls
    assert set(json.loads(call.function.arguments)) == {"city"}


def test_sdk_parse_reports_a_forced_ending_as_length(client: openai.OpenAI, model_id: str) -> None:
    # chat.completions.parse refuses finish_reason "length" by design; the completion it carries still parses.
    for seed in range(4):
        try:
            parsed = client.chat.completions.parse(
                model=model_id, messages=[{"role": "user", "content": PROMPT}], response_format=Product, max_tokens=11, temperature=1.0, seed=seed
            )
        except openai.LengthFinishReasonError as error:
            _product(error.completion.choices[0].message.content)
        else:
            assert isinstance(parsed.choices[0].message.parsed, Product)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": PROMPT}], "response_format": CHAT_FORMAT, "max_tokens": 3}, "max_tokens"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": PROMPT}], "response_format": CHAT_FORMAT, "max_completion_tokens": 3},
            "max_completion_tokens",
        ),
        ("/v1/completions", {"prompt": PROMPT, "response_format": CHAT_FORMAT, "max_tokens": 3}, "max_tokens"),
        ("/v1/responses", {"input": PROMPT, "text": TEXT_FORMAT, "max_output_tokens": 3}, "max_output_tokens"),
        ("/v1/responses", {"input": PROMPT, "text": TEXT_FORMAT, "max_output_tokens": 3, "stream": True}, "max_output_tokens"),
    ],
)
def test_a_budget_below_the_shortest_valid_output_is_a_400(http: httpx.Client, model_id: str, path: str, body: dict, param: str) -> None:
    reply = http.post(path, json={"model": model_id, **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{param}: 3 is too few for the requested output format")
    assert "takes 10 tokens" in error["message"]


def test_no_warnings_key_when_nothing_was_forced(http: httpx.Client, model_id: str) -> None:
    plain = http.post("/v1/chat/completions", json={"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    assert plain.status_code == 200 and "warnings" not in plain.json()["choices"][0]
    response = http.post("/v1/responses", json={"model": model_id, "input": "Hi", "max_output_tokens": 3})
    assert response.status_code == 200 and "warnings" not in response.json()
