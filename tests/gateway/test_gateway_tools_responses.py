"""Responses API function tools, tool_choice, function_call items and their streamed events, and
structured outputs, with the official SDK against the real engine. Calls are asserted only where a
constraint forces them (see test_gateway_tools_chat.py)."""

from __future__ import annotations

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.gateway.test_gateway_tools_chat import TIME_PARAMETERS, WEATHER_PARAMETERS, fits

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city.", "parameters": WEATHER_PARAMETERS}
TIME = {"type": "function", "name": "get_time", "description": "Current time in a timezone.", "parameters": TIME_PARAMETERS}
ASK = "What is the weather in Paris?"


class Capital(BaseModel):
    country: str
    capital: str


def test_parse_into_a_pydantic_model(client: openai.OpenAI, model_id: str) -> None:
    parsed = client.responses.parse(
        model=model_id, input="What is the capital of France?", text_format=Capital, temperature=0, max_output_tokens=200
    )
    assert parsed.status == "completed" and isinstance(parsed.output_parsed, Capital)
    assert parsed.text.format.type == "json_schema"


async def test_async_parse_into_a_pydantic_model(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    parsed = await async_client.responses.parse(
        model=model_id, input="What is the capital of Italy?", text_format=Capital, temperature=0, max_output_tokens=200
    )
    assert isinstance(parsed.output_parsed, Capital)


def test_named_tool_choice_gives_a_function_call_item(client: openai.OpenAI, model_id: str) -> None:
    response = client.responses.create(
        model=model_id,
        input=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=60,
    )
    assert response.status == "completed"
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    fits("get_weather", call.arguments)
    assert response.output_text == ""
    assert [tool.name for tool in response.tools] == ["get_weather", "get_time"]
    assert response.tool_choice.name == "get_weather"


@pytest.mark.parametrize("tools", [[WEATHER], [WEATHER, TIME]], ids=["one-tool", "two-tools"])
def test_required_gives_some_call(client: openai.OpenAI, model_id: str, tools: list[dict]) -> None:
    response = client.responses.create(
        model=model_id, input="Hello!", tools=tools, tool_choice="required", temperature=0, max_output_tokens=60
    )
    # One tool is that tool named (one call); several may give several calls (parallel_tool_calls defaults to true).
    assert len(response.output) == 1 if len(tools) == 1 else len(response.output) >= 1
    for call in response.output:
        assert call.type == "function_call" and call.name in {tool["name"] for tool in tools}
        fits(call.name, call.arguments)
    assert response.tool_choice == "required"


def test_none_answers_with_a_message(client: openai.OpenAI, model_id: str) -> None:
    response = client.responses.create(model=model_id, input=ASK, tools=[WEATHER], tool_choice="none", temperature=0, max_output_tokens=8)
    assert [item.type for item in response.output] == ["message"]


async def test_streamed_call_follows_the_documented_events(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    stream = await async_client.responses.create(
        model=model_id,
        input=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "name": "get_time"},
        temperature=0,
        max_output_tokens=60,
        stream=True,
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    deltas = [event for event in events if event.type == "response.function_call_arguments.delta"]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert deltas and kinds[3 : 3 + len(deltas)] == ["response.function_call_arguments.delta"] * len(deltas)
    assert kinds[3 + len(deltas) :] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    added, done, item_done, completed = events[2], events[-3], events[-2], events[-1]
    assert added.item.type == "function_call" and added.item.arguments == "" and added.item.name == "get_time"
    arguments = "".join(event.delta for event in deltas)
    assert done.arguments == arguments and done.name == "get_time" and done.item_id == added.item.id
    fits("get_time", arguments)
    assert item_done.item.arguments == arguments and item_done.item.status == "completed"
    assert completed.response.output[0].arguments == arguments and completed.response.usage.output_tokens > 0


def test_stream_manager_gives_the_final_call(client: openai.OpenAI, model_id: str) -> None:
    with client.responses.stream(
        model=model_id, input=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_output_tokens=60
    ) as stream:
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call"
    fits(call.name, call.arguments)


def test_function_call_output_round_trip(client: openai.OpenAI, model_id: str) -> None:
    """The call and its result go back as input items, and the result reaches the prompt."""
    first = client.responses.create(
        model=model_id, input=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_output_tokens=60
    )
    call = first.output[0]

    def answer(result: str) -> openai.types.responses.Response:
        items = [
            {"role": "user", "content": ASK},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": result},
        ]
        return client.responses.create(model=model_id, input=items, tools=[WEATHER], temperature=0, max_output_tokens=12)

    short, long = answer("18 C"), answer("18 C, light rain from the west, humidity 80 percent, wind 12 km/h")
    assert short.status in ("completed", "incomplete") and short.output
    assert long.usage.input_tokens > short.usage.input_tokens > first.usage.input_tokens


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_time"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}, "tool_choice.type"),
        ({"tools": [{**WEATHER, "parameters": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}], "tool_choice": "required"}, "tools[0].parameters"),
    ],
)
def test_tool_mistakes_are_400_naming_the_field(http: httpx.Client, model_id: str, patch: dict, param: str) -> None:
    reply = http.post("/v1/responses", json={"model": model_id, "input": ASK, "max_output_tokens": 2, **patch})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param, reply.json()

