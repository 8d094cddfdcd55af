"""Several tool calls per reply (``parallel_tool_calls``) through Chat Completions and Responses, with
the official SDK against the real engine.

Free model behaviour is never asserted: two calls come from an output format (``response_format`` /
``text.format``) whose schema is an array of exactly two call envelopes, with ``tool_choice="auto"``
so the tools are offered and the engine's parser reads the forced array as calls. ``required``
over several tools forces one or more calls, so only ``>= 1`` is checked there.
"""

from __future__ import annotations

import openai
import pytest

from tests.gateway.test_gateway_tools_chat import SCHEMAS, TIME, WEATHER, fits
from tests.gateway.test_gateway_tools_responses import TIME as RESPONSES_TIME
from tests.gateway.test_gateway_tools_responses import WEATHER as RESPONSES_WEATHER

BOTH = "What are the weather and the time in Paris?"


def envelope(name: str) -> dict:
    properties = {"name": {"const": name}, "arguments": SCHEMAS[name]}
    return {"type": "object", "properties": properties, "required": ["name", "arguments"], "additionalProperties": False}


TWO_CALLS = {"type": "array", "items": {"anyOf": [envelope(n) for n in SCHEMAS]}, "minItems": 2, "maxItems": 2}
FORCE_TWO = {"type": "json_schema", "json_schema": {"name": "two_calls", "schema": TWO_CALLS}}
TEXT_FORCE_TWO = {"format": {"type": "json_schema", "name": "two_calls", "schema": TWO_CALLS}}
MESSAGES = [{"role": "user", "content": BOTH}]


def test_two_forced_calls_are_two_tool_calls(client: openai.OpenAI, model_id: str) -> None:
    reply = client.chat.completions.create(
        model=model_id, messages=MESSAGES, tools=[WEATHER, TIME], response_format=FORCE_TWO, temperature=0, max_tokens=96
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    first, second = choice.message.tool_calls
    assert first.id.startswith("call_") and second.id.startswith("call_") and first.id != second.id
    for call in (first, second):
        assert call.type == "function"
        fits(call.function.name, call.function.arguments)


async def test_streamed_calls_have_indices_0_and_1_and_their_first_delta_names_them(
    async_client: openai.AsyncOpenAI, model_id: str
) -> None:
    stream = await async_client.chat.completions.create(
        model=model_id,
        messages=MESSAGES,
        tools=[WEATHER, TIME],
        response_format=FORCE_TWO,
        parallel_tool_calls=True,
        temperature=0,
        max_tokens=96,
        stream=True,
    )
    deltas, finish = [], None
    async for chunk in stream:
        choice = chunk.choices[0]
        assert not choice.delta.content
        deltas += choice.delta.tool_calls or []
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    indices = [d.index for d in deltas]
    assert indices == sorted(indices) and set(indices) == {0, 1}, "call 0 ends before call 1 starts"
    for index in (0, 1):
        first, *rest = [d for d in deltas if d.index == index]
        assert first.id.startswith("call_") and first.type == "function" and first.function.name in SCHEMAS
        assert all(d.id is None and d.type is None and d.function.name is None for d in rest)
        fits(first.function.name, "".join(d.function.arguments or "" for d in [first, *rest]))


def test_stream_manager_rebuilds_both_calls(client: openai.OpenAI, model_id: str) -> None:
    with client.chat.completions.stream(
        model=model_id, messages=MESSAGES, tools=[WEATHER, TIME], response_format=FORCE_TWO, temperature=0, max_tokens=96
    ) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert [event.index for event in done] == [0, 1]
    calls = final.choices[0].message.tool_calls
    assert [call.function.name for call in calls] == [event.name for event in done]
    assert [call.function.arguments for call in calls] == [event.arguments for event in done]


async def test_parallel_tool_calls_false_keeps_only_the_first_call(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    reply = await async_client.chat.completions.create(
        model=model_id,
        messages=MESSAGES,
        tools=[WEATHER, TIME],
        response_format=FORCE_TWO,
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=96,
    )
    choice = reply.choices[0]
    [call] = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls"
    fits(call.function.name, call.function.arguments)


@pytest.mark.parametrize("parallel", [True, False])
def test_required_over_two_tools_forces_one_or_more_calls(client: openai.OpenAI, model_id: str, parallel: bool) -> None:
    reply = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": BOTH}],
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=parallel,
        temperature=0,
        max_tokens=96,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert len(choice.message.tool_calls) >= 1 if parallel else len(choice.message.tool_calls) == 1
    for call in choice.message.tool_calls:
        fits(call.function.name, call.function.arguments)


# --- Responses -------------------------------------------------------------------------------


def test_responses_two_forced_calls_are_two_function_call_items(client: openai.OpenAI, model_id: str) -> None:
    response = client.responses.create(
        model=model_id,
        input=BOTH,
        tools=[RESPONSES_WEATHER, RESPONSES_TIME],
        text=TEXT_FORCE_TWO,
        temperature=0,
        max_output_tokens=96,
    )
    assert response.status == "completed" and response.parallel_tool_calls is True
    first, second = response.output
    assert first.type == second.type == "function_call" and first.call_id != second.call_id and first.id != second.id
    for call in (first, second):
        assert call.status == "completed"
        fits(call.name, call.arguments)
    assert response.output_text == ""


async def test_responses_stream_closes_each_call_before_the_next(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    stream = await async_client.responses.create(
        model=model_id,
        input=BOTH,
        tools=[RESPONSES_WEATHER, RESPONSES_TIME],
        text=TEXT_FORCE_TWO,
        temperature=0,
        max_output_tokens=96,
        stream=True,
    )
    events = [event async for event in stream]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    # Collapse each run of argument deltas to one entry: the order of the rest is OpenAI's.
    kinds = [event.type for event in events]
    shape = [k for i, k in enumerate(kinds) if k != "response.function_call_arguments.delta" or kinds[i - 1] != k]
    per_call = [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert shape == ["response.created", "response.in_progress", *per_call, *per_call, "response.completed"]
    completed = events[-1].response
    for output_index in (0, 1):
        mine = [e for e in events if getattr(e, "output_index", None) == output_index]
        added, done, item_done = mine[0], mine[-2], mine[-1]
        arguments = "".join(e.delta for e in mine if e.type == "response.function_call_arguments.delta")
        assert added.item.arguments == "" and added.item.name in SCHEMAS
        assert done.arguments == arguments and done.name == added.item.name
        assert item_done.item.arguments == arguments and item_done.item.call_id == added.item.call_id
        assert completed.output[output_index].arguments == arguments
        fits(added.item.name, arguments)


def test_responses_parallel_tool_calls_false_keeps_one_call(client: openai.OpenAI, model_id: str) -> None:
    response = client.responses.create(
        model=model_id,
        input=BOTH,
        tools=[RESPONSES_WEATHER, RESPONSES_TIME],
        text=TEXT_FORCE_TWO,
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=96,
    )
    [call] = response.output
    assert call.type == "function_call" and response.parallel_tool_calls is False
    fits(call.name, call.arguments)
