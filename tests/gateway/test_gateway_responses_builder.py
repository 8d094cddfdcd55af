"""The Responses event builder fed hand-built engine events: reasoning (gpt-oss's analysis channel) the small model never emits."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response as SdkResponse
from quartet.engine.v1 import engine_pb2

from quartet.services.gateway.errors import Internal
from quartet.services.gateway.responses_builder import ResponseBuilder
from quartet.services.gateway.schemas.responses_object import Response


def chunk(text: str, kind: int = engine_pb2.DELTA_KIND_CONTENT) -> engine_pb2.GenerateResponse:
    return engine_pb2.GenerateResponse(chunk=engine_pb2.Chunk(index=0, text=text, kind=kind, token_ids=[1]))


def complete(reason: int, completion_tokens: int) -> engine_pb2.GenerateResponse:
    usage = engine_pb2.Usage(prompt_tokens=7, completion_tokens=completion_tokens, total_tokens=7 + completion_tokens)
    return engine_pb2.GenerateResponse(complete=engine_pb2.Complete(index=0, finish_reason=reason, usage=usage))


def builder() -> ResponseBuilder:
    return ResponseBuilder(Response(id="resp_1", created_at=1, status="in_progress", model="m", store=False), wants_logprobs=False)


def test_reasoning_comes_first_as_its_own_item() -> None:
    b = builder()
    events = b.start()
    reasoning = engine_pb2.DELTA_KIND_REASONING
    for event in (chunk("Think", reasoning), chunk("ing.", reasoning), chunk("Hel"), chunk(""), chunk("lo"), complete(engine_pb2.FINISH_REASON_STOP, 5)):
        events += b.apply(event)
    events += b.finish()
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = SdkResponse.model_validate(json.loads(events[-1].response.model_dump_json()))
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "Thinking." and final.output_text == "Hello"
    assert final.usage.output_tokens_details.reasoning_tokens == 2 and final.usage.output_tokens == 5


def call_chunk(arguments: str, *, call_id: str = "", name: str = "") -> engine_pb2.GenerateResponse:
    delta = engine_pb2.ToolCallDelta(index=0, id=call_id, name=name, arguments=arguments)
    return engine_pb2.GenerateResponse(
        chunk=engine_pb2.Chunk(index=0, kind=engine_pb2.DELTA_KIND_TOOL_CALL, tool_call=delta, token_ids=[1])
    )


def test_reasoning_then_a_call_as_gpt_oss_sends_them() -> None:
    """Harmony: analysis text, then a call on the commentary channel; no message item is made up."""
    b = builder()
    events = b.start()
    reasoning = engine_pb2.DELTA_KIND_REASONING
    feed = (
        chunk("Need weather.", reasoning),
        call_chunk("", call_id="call_1", name="get_weather"),
        call_chunk('{"city": '),
        call_chunk('"Paris"}'),
        complete(engine_pb2.FINISH_REASON_TOOL_CALLS, 6),
    )
    for event in feed:
        events += b.apply(event)
    events += b.finish()
    assert [e.type for e in events][5:] == [
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = SdkResponse.model_validate(json.loads(events[-1].response.model_dump_json()))
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    call = final.output[1]
    assert (call.call_id, call.name, json.loads(call.arguments), call.status) == ("call_1", "get_weather", {"city": "Paris"}, "completed")
    assert final.output_text == ""


def test_an_empty_answer_still_has_its_message() -> None:
    b = builder()
    b.start()
    b.apply(complete(engine_pb2.FINISH_REASON_STOP, 0))
    events = b.finish()
    assert [e.type for e in events][-1] == "response.completed"
    assert SdkResponse.model_validate(json.loads(b.response.model_dump_json())).output_text == ""


def test_a_stream_without_its_end_is_an_error() -> None:
    b = builder()
    b.apply(chunk("Hi"))
    with pytest.raises(Internal) as info:
        b.finish()
    failed = b.fail(info.value)
    assert [e.type for e in failed] == ["error", "response.failed"]
    assert failed[1].response.status == "failed" and failed[1].response.error.code == "server_error"
