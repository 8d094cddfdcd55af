"""tool_plan: which tools the engine sees and which constraint forces a call (pure logic, no engine)."""

from __future__ import annotations

import json

import pytest

from quartet.services.gateway.convert import to_generate_request
from quartet.services.gateway.errors import BadRequest, UnsupportedParameter
from quartet.services.gateway.request_body import parse_body
from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest
from quartet.services.gateway.schemas.tools import FunctionSpec
from quartet.services.gateway.tool_plan import plan_tools

A = FunctionSpec("a", parameters={"type": "object", "properties": {"x": {"type": "integer"}}})
B = FunctionSpec("b")


def test_modes() -> None:
    assert plan_tools([A, B], None).tools == (A, B) and not plan_tools([A, B], None).forces_call
    assert plan_tools([A, B], "none").tools == ()
    assert plan_tools([], None).tools == ()
    assert plan_tools([A, B], "b").forced_tool == "b"
    assert plan_tools([A], "required").forced_tool == "a"


def test_required_over_several_tools_is_one_or_more_of_their_envelopes() -> None:
    plan = plan_tools([A, B], "required")
    assert plan.parallel and plan.any_call_schema["type"] == "array" and plan.any_call_schema["minItems"] == 1
    assert plan.any_call_schema["items"] == plan_tools([A, B], "required", parallel=False).any_call_schema


def test_parallel_tool_calls_reaches_the_engine_only_with_tools_that_may_make_several() -> None:
    assert plan_tools([A, B], None).parallel and not plan_tools([A, B], None, parallel=False).parallel
    assert not plan_tools([A, B], "a").parallel, "a named tool is one call"
    assert not plan_tools([A], "required").parallel and not plan_tools([A, B], "none").parallel
    raw = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "parallel_tool_calls": True}
    request = parse_body(json.dumps(raw).encode(), ChatCompletionRequest)
    assert not to_generate_request(request, "r", tools=plan_tools([], None)).chat.parallel_tool_calls
    assert to_generate_request(request, "r", tools=plan_tools([A], None)).chat.parallel_tool_calls


def test_required_without_parallel_calls_is_any_of_their_envelopes() -> None:
    schema = plan_tools([A, B], "required", parallel=False).any_call_schema
    assert [option["properties"]["name"] for option in schema["anyOf"]] == [{"const": "a"}, {"const": "b"}]
    assert schema["anyOf"][0]["properties"]["arguments"] == A.parameters
    assert schema["anyOf"][1]["properties"]["arguments"] == {"type": "object"}


def test_harmony_models_cannot_take_required_over_several_tools() -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        plan_tools([A, B], "required", architecture="gpt_oss")
    assert caught.value.field == "tool_choice"
    assert plan_tools([A], "required", architecture="gpt_oss").forced_tool == "a"


@pytest.mark.parametrize(("tools", "choice", "field"), [([A, A], None, "tools"), ([], "required", "tool_choice"), ([], "auto", "tool_choice"), ([A], "b", "tool_choice")])
def test_impossible_choices(tools: list[FunctionSpec], choice: str | None, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        plan_tools(tools, choice)
    assert caught.value.field == field


def test_a_forced_call_takes_the_place_of_response_format() -> None:
    raw = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "a", "parameters": A.parameters}}],
        "tool_choice": {"type": "function", "function": {"name": "a"}},
        "response_format": {"type": "json_object"},
    }
    request = parse_body(json.dumps(raw).encode(), ChatCompletionRequest)
    pb = to_generate_request(request, "r", tools=plan_tools(request.function_specs, request.tool_choice_name))
    assert pb.constraint.WhichOneof("kind") == "tool_name" and pb.constraint.tool_name == "a"
    assert [(t.name, json.loads(t.parameters_json)) for t in pb.chat.tools] == [("a", A.parameters)]
    auto = to_generate_request(request, "r", tools=plan_tools(request.function_specs, "auto"))
    assert auto.constraint.json_object and len(auto.chat.tools) == 1
    none = to_generate_request(request, "r", tools=plan_tools(request.function_specs, "none"))
    assert none.constraint.json_object and not none.chat.tools
