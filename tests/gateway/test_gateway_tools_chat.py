"""Chat Completions tools, tool_choice and streamed tool calls, with the official SDK against the real engine.

The bundled SmolLM2-135M rarely calls a tool on its own, so every assertion on a
call rests on a constraint that forces it (a named tool, or ``required``);
``auto`` is checked for shape only.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME_PARAMETERS = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 20}},
    "required": ["timezone"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": WEATHER_PARAMETERS}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone.", "parameters": TIME_PARAMETERS}}
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def fits(name: str, arguments: str) -> dict:
    """The call's arguments, parsed and checked against the tool's schema."""
    parsed = json.loads(arguments)
    jsonschema.validate(parsed, SCHEMAS[name])
    return parsed


def test_named_tool_choice_forces_a_call(client: openai.OpenAI, model_id: str) -> None:
    reply = client.chat.completions.create(
        model=model_id, messages=ASK, tools=[WEATHER, TIME], tool_choice=FORCE_WEATHER, temperature=0, max_tokens=60
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    fits("get_weather", call.function.arguments)
    assert reply.usage.completion_tokens > 0


async def test_streamed_tool_call_has_openai_deltas(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    stream = await async_client.chat.completions.create(
        model=model_id,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        temperature=0,
        max_tokens=60,
        stream=True,
        stream_options={"include_usage": True},
    )
    calls, finish, usage = [], None, None
    async for chunk in stream:
        if not chunk.choices:
            usage = chunk.usage
            continue
        choice = chunk.choices[0]
        calls += choice.delta.tool_calls or []
        assert not choice.delta.content, "a forced call streams no content"
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    first, rest = calls[0], calls[1:]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "get_time"
    assert rest and all(d.index == 0 and d.id is None and d.type is None and d.function.name is None for d in rest)
    fits("get_time", "".join(d.function.arguments or "" for d in calls))
    assert usage is not None and usage.completion_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_manager_accumulates_the_call(client: openai.OpenAI, model_id: str) -> None:
    """The SDK's ChatCompletionStreamManager rebuilds the call and parses it into the tool's pydantic model."""

    class GetWeather(BaseModel):
        city: str
        unit: str

    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    with client.chat.completions.stream(
        model=model_id, messages=ASK, tools=[tool], tool_choice=FORCE_WEATHER, temperature=0, max_tokens=60
    ) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert len(done) == 1 and done[0].name == "get_weather"
    call = final.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("tools", [[WEATHER], [WEATHER, TIME]], ids=["one-tool", "two-tools"])
def test_required_forces_some_call(client: openai.OpenAI, model_id: str, tools: list[dict]) -> None:
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Hello there!"}],
        tools=tools,
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    # One tool is that tool named (one call); several may give several calls (parallel_tool_calls defaults to true).
    calls = choice.message.tool_calls
    assert len(calls) == 1 if len(tools) == 1 else len(calls) >= 1
    for call in calls:
        assert call.function.name in {tool["function"]["name"] for tool in tools}
        fits(call.function.name, call.function.arguments)


def test_tool_choice_none_never_parses_a_call(client: openai.OpenAI, model_id: str) -> None:
    """With none, even a reply that spells a call envelope (forced here by a schema) stays content."""
    envelope = {
        "type": "object",
        "properties": {"name": {"const": "get_weather"}, "arguments": WEATHER_PARAMETERS},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=model_id,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="none",
        response_format={"type": "json_schema", "json_schema": {"name": "envelope", "schema": envelope, "strict": True}},
        temperature=0,
        max_tokens=60,
    )
    choice = reply.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    assert json.loads(choice.message.content)["name"] == "get_weather"


def test_auto_answers_in_one_of_the_two_shapes(client: openai.OpenAI, model_id: str) -> None:
    reply = client.chat.completions.create(
        model=model_id, messages=ASK, tools=[WEATHER], tool_choice="auto", parallel_tool_calls=True, temperature=0, max_tokens=40
    )
    choice = reply.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) >= 1
    else:
        assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")


def test_tool_results_are_forwarded(client: openai.OpenAI, model_id: str) -> None:
    """A full round trip: the forced call goes back with its result, and the result reaches the prompt."""
    first = client.chat.completions.create(
        model=model_id, messages=ASK, tools=[WEATHER], tool_choice=FORCE_WEATHER, temperature=0, max_tokens=60
    )
    call = first.choices[0].message.tool_calls[0]

    def answer(result: str) -> openai.types.chat.ChatCompletion:
        messages = [
            *ASK,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ]
        return client.chat.completions.create(model=model_id, messages=messages, tools=[WEATHER], temperature=0, max_tokens=12)

    short, long = answer("18 C"), answer("18 C, light rain from the west, humidity 80 percent, wind 12 km/h")
    assert short.choices[0].message.content or short.choices[0].message.tool_calls
    assert long.usage.prompt_tokens > short.usage.prompt_tokens > first.usage.prompt_tokens


def test_parse_reads_the_call_into_the_pydantic_model(client: openai.OpenAI, model_id: str) -> None:
    class GetWeather(BaseModel):
        city: str
        unit: str

    reply = client.chat.completions.parse(
        model=model_id,
        messages=ASK,
        tools=[openai.pydantic_function_tool(GetWeather, name="get_weather")],
        tool_choice=FORCE_WEATHER,
        temperature=0,
        max_tokens=60,
    )
    parsed = reply.choices[0].message.tool_calls[0].function.parsed_arguments
    assert isinstance(parsed, GetWeather)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}, "tools[0].function.parameters"),
        ({"functions": [{"name": "f"}]}, "functions"),
    ],
)
def test_tool_mistakes_are_400_naming_the_field(http: httpx.Client, model_id: str, patch: dict, param: str) -> None:
    reply = http.post("/v1/chat/completions", json={"model": model_id, "messages": ASK, "max_tokens": 2, **patch})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param, reply.json()


@pytest.mark.parametrize(("stream", "tools", "param"), [(False, [TIME], "tools[1].function.parameters"), (True, [], "tools[0].function.parameters"), (False, [TIME, WEATHER], "tools")])
def test_a_schema_the_engine_cannot_compile_is_400(http: httpx.Client, model_id: str, stream: bool, tools: list, param: str) -> None:
    """The compiler's message comes back naming the tool's parameters (or tools, for required over several)."""
    broken = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}}
    offered = [*tools[:1], broken, *tools[1:]] if param == "tools" else [*tools, broken]
    choice = "required" if param == "tools" else {"type": "function", "function": {"name": "f"}}
    body = {"model": model_id, "messages": ASK, "tools": offered, "tool_choice": choice, "max_tokens": 8, "stream": stream}
    reply = http.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and "nonsense" in error["message"], error
