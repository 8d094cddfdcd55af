"""OpenAI requests to engine protos, and engine events to OpenAI chunks, without a server.

The events here are the engine's real proto messages, built by hand to reach
cases a small model will not produce on demand (tool calls, reasoning, n > 1).
"""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion as SdkCompletion
from openai.types.chat import ChatCompletionChunk as SdkChunk
from quartet.engine.v1 import engine_pb2

from quartet.services.common.errors import Aborted
from quartet.services.gateway.chat_completion import CompletionInfo, Transcript
from quartet.services.gateway.convert import to_generate_request, to_responses_generate_request, to_text_generate_request
from quartet.services.gateway.errors import BadRequest
from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest
from quartet.services.gateway.schemas.completion_request import CompletionRequest
from quartet.services.gateway.schemas.responses_request import ResponsesRequest
from quartet.services.gateway.validation import parse_body


def request(**fields) -> ChatCompletionRequest:
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_body(json.dumps({"model": "m", **fields}).encode(), ChatCompletionRequest)


def test_sampling_and_stopping_map_to_the_proto() -> None:
    pb = to_generate_request(
        request(temperature=0.5, top_p=0.9, seed=-1, stop="END", max_tokens=7, n=2, top_k=3, logit_bias={"12": -100}),
        "req-1",
    )
    assert pb.request_id == "req-1" and pb.model == "m"
    assert [(m.role, m.content) for m in pb.chat.messages] == [("user", "hi")]
    assert pb.sampling.temperature == 0.5 and pb.sampling.HasField("top_p") and pb.sampling.n == 2
    assert pb.sampling.seed == 2**64 - 1
    assert pb.sampling.top_k == 3 and dict(pb.sampling.logit_bias) == {12: -100.0}
    assert list(pb.stopping.stop) == ["END"] and pb.stopping.max_tokens == 7


#: One body shape per API, and how each turns into the engine request.
_APIS = {
    "chat": (ChatCompletionRequest, {"messages": [{"role": "user", "content": "hi"}]},
             lambda r: to_generate_request(r, "r")),
    "completions": (CompletionRequest, {"prompt": "hi"}, lambda r: to_text_generate_request(r, "hi", "r", max_tokens=None)),
    "responses": (ResponsesRequest, {"input": "hi"}, lambda r: to_responses_generate_request(r, r.items, "r", max_tokens=None)),
}
_SHARED = {"temperature": 0.25, "top_p": 0.5, "seed": -3, "top_k": 7, "min_p": 0.125, "repetition_penalty": 1.5, "ignore_eos": True}


@pytest.mark.parametrize("api", sorted(_APIS))
def test_every_api_carries_the_shared_sampling_fields_alike(api: str) -> None:
    model, body, convert = _APIS[api]
    pb = convert(parse_body(json.dumps({"model": "m", **body, **_SHARED}).encode(), model))
    assert (pb.sampling.temperature, pb.sampling.top_p, pb.sampling.top_k) == (0.25, 0.5, 7)
    assert (pb.sampling.min_p, pb.sampling.repetition_penalty, pb.sampling.seed) == (0.125, 1.5, 2**64 - 3)
    assert pb.stopping.ignore_eos


@pytest.mark.parametrize("api", sorted(_APIS))
@pytest.mark.parametrize("field, value", [("temperature", 2.5), ("top_p", 0), ("top_k", -1), ("min_p", 1.5),
                                          ("repetition_penalty", 0), ("seed", 2**63)])
def test_every_api_refuses_a_bad_sampling_value_alike(api: str, field: str, value: float) -> None:
    model, body, _ = _APIS[api]
    with pytest.raises(BadRequest) as caught:
        parse_body(json.dumps({"model": "m", **body, field: value}).encode(), model)
    assert caught.value.field == field
    messages = set()
    for other in _APIS.values():
        with pytest.raises(BadRequest) as again:
            parse_body(json.dumps({"model": "m", **other[1], field: value}).encode(), other[0])
        messages.add(str(again.value))
    assert len(messages) == 1, messages


def test_unset_options_stay_unset_for_engine_defaults() -> None:
    pb = to_generate_request(request(), "r")
    for name in ("temperature", "top_p", "top_k", "min_p", "seed", "n", "repetition_penalty"):
        assert not pb.sampling.HasField(name), name
    assert not pb.stopping.HasField("max_tokens")


def test_max_completion_tokens_wins_and_parts_join() -> None:
    pb = to_generate_request(
        request(
            max_completion_tokens=9,
            messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        ),
        "r",
    )
    assert pb.stopping.max_tokens == 9 and pb.chat.messages[0].content == "a\nb"


def chunk(index: int, text: str, kind: int = engine_pb2.DELTA_KIND_CONTENT, **extra) -> engine_pb2.GenerateResponse:
    return engine_pb2.GenerateResponse(chunk=engine_pb2.Chunk(index=index, text=text, kind=kind, **extra))


def complete(index: int, reason: int, completion_tokens: int) -> engine_pb2.GenerateResponse:
    usage = engine_pb2.Usage(prompt_tokens=5, completion_tokens=completion_tokens, total_tokens=5 + completion_tokens)
    return engine_pb2.GenerateResponse(complete=engine_pb2.Complete(index=index, finish_reason=reason, usage=usage))


def test_two_choices_stream_and_collect() -> None:
    transcript = Transcript(CompletionInfo(id="chatcmpl-1", created=1, model="m", include_usage=True))
    events = [
        chunk(0, "Hel"),
        chunk(1, "Bon"),
        chunk(0, ""),  # held back: a possible stop string
        chunk(0, "lo"),
        complete(0, engine_pb2.FINISH_REASON_STOP, 3),
        chunk(1, "jour", engine_pb2.DELTA_KIND_REASONING),
        complete(1, engine_pb2.FINISH_REASON_LENGTH, 6),
    ]
    streamed = [choice for event in events for choice in transcript.apply(event)]
    chunks = [SdkChunk.model_validate(json.loads(transcript.chunk([c]).model_dump_json())) for c in streamed]
    first_of = {}
    for c in chunks:
        first_of.setdefault(c.choices[0].index, c.choices[0].delta)
    assert first_of[0].role == "assistant" and first_of[1].role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == 0) == "Hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop", "length"]
    usage = SdkChunk.model_validate(json.loads(transcript.usage_chunk().model_dump_json()))
    assert usage.choices == [] and usage.usage.total_tokens == 11

    completion = SdkCompletion.model_validate(json.loads(transcript.completion().model_dump_json()))
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[1].message.content == "Bon"
    assert completion.choices[1].message.model_extra["reasoning_content"] == "jour"
    assert completion.usage.completion_tokens == 6


def test_tool_call_deltas_assemble() -> None:
    transcript = Transcript(CompletionInfo(id="c", created=1, model="m"))
    kind = engine_pb2.DELTA_KIND_TOOL_CALL
    transcript.apply(chunk(0, "", kind, tool_call=engine_pb2.ToolCallDelta(index=0, id="call_1", name="add", arguments='{"a"')))
    streamed = transcript.apply(chunk(0, "", kind, tool_call=engine_pb2.ToolCallDelta(index=0, arguments=": 1}")))
    transcript.apply(complete(0, engine_pb2.FINISH_REASON_TOOL_CALLS, 4))
    delta = SdkChunk.model_validate(json.loads(transcript.chunk(streamed).model_dump_json())).choices[0].delta
    assert delta.tool_calls[0].function.arguments == ": 1}" and delta.tool_calls[0].id is None
    message = SdkCompletion.model_validate(json.loads(transcript.completion().model_dump_json())).choices[0].message
    assert message.content is None
    assert (message.tool_calls[0].id, message.tool_calls[0].function.name) == ("call_1", "add")
    assert json.loads(message.tool_calls[0].function.arguments) == {"a": 1}


def test_logprobs_convert() -> None:
    transcript = Transcript(CompletionInfo(id="c", created=1, model="m", wants_logprobs=True))
    position = engine_pb2.PositionLogprobs(
        chosen=engine_pb2.TokenLogprob(token_id=1, text="é", logprob=-0.1),
        top=[engine_pb2.TokenLogprob(token_id=1, text="é", logprob=-0.1), engine_pb2.TokenLogprob(token_id=2, text="e", logprob=-2.5)],
    )
    transcript.apply(chunk(0, "é", logprobs=[position], token_ids=[1]))
    transcript.apply(complete(0, engine_pb2.FINISH_REASON_STOP, 1))
    logprobs = SdkCompletion.model_validate(json.loads(transcript.completion().model_dump_json())).choices[0].logprobs
    assert logprobs.content[0].bytes == [0xC3, 0xA9]
    assert [t.token for t in logprobs.content[0].top_logprobs] == ["é", "e"]


def test_an_aborted_choice_is_an_error_not_a_finish_reason() -> None:
    transcript = Transcript(CompletionInfo(id="c", created=1, model="m"))
    with pytest.raises(Aborted):
        transcript.apply(complete(0, engine_pb2.FINISH_REASON_ABORT, 0))


def test_formats_become_engine_constraints() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    pb = to_generate_request(request(response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": schema}}), "r")
    assert pb.constraint.WhichOneof("kind") == "json_schema" and json.loads(pb.constraint.json_schema) == schema
    assert to_generate_request(request(response_format={"type": "json_object"}), "r").constraint.json_object
    assert not to_generate_request(request(response_format={"type": "text"}), "r").HasField("constraint")

    from quartet.services.gateway.convert import to_responses_generate_request
    from quartet.services.gateway.schemas.responses_request import ResponsesRequest

    body = parse_body(
        json.dumps({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "A", "schema": schema}}}).encode(),
        ResponsesRequest,
    )
    pb = to_responses_generate_request(body, body.items, "r", max_tokens=None)
    assert json.loads(pb.constraint.json_schema) == schema
