"""Several tool calls per reply: the streaming parser on literal token streams, the tool prompt,
validation, and the bundled model over a real channel with a constraint that forces two calls."""

from __future__ import annotations

import json

import grpc
import jsonschema
import pytest
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.errors import InvalidArgument
from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.engine.api.events import DeltaKind, FinishReason, Usage
from quartet.services.engine.text.json_tool_calls import JsonToolCallParser
from quartet.services.engine.text.output_parser import Delta, typed_chunks
from quartet.services.engine.api.request import ChatInput, ChatMessage, Tool, ToolCall
from quartet.services.engine.text.tool_prompt import PARALLEL_TOOL_INSTRUCTIONS, TOOL_INSTRUCTIONS, with_tools
from quartet.services.engine.api.validation import check_chat

NAMES = ["get_weather", "get_time"]
WEATHER = '{"name": "get_weather", "arguments": {"city": "Pa}ris, \\"north\\"", "days": [1, 2]}}'
TIME = '{"name": "get_time", "parameters": {"timezone": "UTC"}}'


def feed(text: str, step: int, *, parallel: bool = True) -> tuple[list[Delta], JsonToolCallParser]:
    """The deltas of ``text`` pushed ``step`` characters at a time, as a token stream would."""
    parser = JsonToolCallParser(NAMES, parallel=parallel)
    deltas: list[Delta] = []
    for i in range(0, len(text), step):
        deltas += parser.push(0, text[i : i + step])
    return deltas + parser.finish(), parser


def calls(deltas: list[Delta]) -> list[tuple[str, str, dict]]:
    """(id, name, parsed arguments) per call index, checking each call's id and name come first, once."""
    by_index: dict[int, list] = {}
    for delta in deltas:
        if delta.tool_call is None:
            continue
        call = delta.tool_call
        if call.index not in by_index:
            assert call.id.startswith("call_") and call.name, "a call's first delta carries its id and name"
            by_index[call.index] = [call.id, call.name, ""]
        else:
            assert not call.id and not call.name
        by_index[call.index][2] += call.arguments
    assert sorted(by_index) == list(range(len(by_index))), "indices count up from 0"
    return [(i, n, json.loads(a)) for i, n, a in (by_index[k] for k in sorted(by_index))]


def content(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas if d.kind is DeltaKind.CONTENT)


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
@pytest.mark.parametrize(
    "text",
    [
        f"[{WEATHER}, {TIME}]",
        f" [\n  {WEATHER},\n  {TIME}\n]\n",
        f"{WEATHER}\n{TIME}\n",
        f"<tool_call>\n{WEATHER}\n</tool_call>\n<tool_call>\n{TIME}\n</tool_call>",
        f"<tool_call>[{WEATHER}, {TIME}]</tool_call>",
    ],
    ids=["array", "array-spaced", "one-per-line", "tagged-each", "tagged-array"],
)
def test_two_calls_stream_with_indices_0_and_1_whatever_the_chunking(text: str, step: int) -> None:
    deltas, parser = feed(text, step)
    [(id0, name0, args0), (id1, name1, args1)] = calls(deltas)
    assert (name0, name1) == ("get_weather", "get_time") and id0 != id1
    assert args0 == {"city": 'Pa}ris, "north"', "days": [1, 2]} and args1 == {"timezone": "UTC"}
    assert content(deltas) == "" and parser.num_tool_calls == 2


@pytest.mark.parametrize("step", [1, 1000])
def test_without_parallel_calls_only_the_first_call_is_parsed(step: int) -> None:
    deltas, parser = feed(f"[{WEATHER}, {TIME}]", step, parallel=False)
    [(_, name, _)] = calls(deltas)
    assert name == "get_weather" and parser.num_tool_calls == 1 and content(deltas) == ""


@pytest.mark.parametrize("step", [1, 4, 1000])
@pytest.mark.parametrize(
    "second",
    ['{"name": "unknown", "arguments": {}}', '{"nom": "get_time"}', "42", 'oops {"name": "get_time", "arguments": {}}'],
)
def test_a_malformed_second_call_ends_the_calls_and_the_first_stands(second: str, step: int) -> None:
    deltas, parser = feed(f"[{WEATHER}, {second}]", step)
    [(_, name, arguments)] = calls(deltas)
    assert name == "get_weather" and arguments["days"] == [1, 2]
    assert parser.num_tool_calls == 1 and content(deltas) == ""


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_text_then_tagged_calls_is_content_then_calls(step: int) -> None:
    deltas, parser = feed(f"Let me check.\n<tool_call>[{WEATHER}, {TIME}]</tool_call>", step)
    assert content(deltas) == "Let me check.\n"
    assert [name for _, name, _ in calls(deltas)] == ["get_weather", "get_time"]
    first_call = next(i for i, d in enumerate(deltas) if d.kind is DeltaKind.TOOL_CALL)
    assert all(d.kind is DeltaKind.CONTENT for d in deltas[:first_call])


@pytest.mark.parametrize(
    "text",
    [f"Here you go: [{WEATHER}]", "[1, 2, 3]", '[{"answer": 42}]', "a <tool_ b", "<tool_call>not json"],
)
def test_text_then_bare_json_and_other_arrays_stay_content(text: str) -> None:
    for step in (1, 3, 1000):
        deltas, parser = feed(text, step)
        assert content(deltas) == text and parser.num_tool_calls == 0


def test_typed_chunks_of_two_calls_in_one_token_keep_them_apart_and_end_with_tool_calls() -> None:
    parser = JsonToolCallParser(NAMES, parallel=True)
    usage = Usage(5, 2)
    first, _ = typed_chunks(
        parser, index=0, token_id=1, text=f"[{WEATHER[:-5]}", usage=usage, logprobs=(), is_finished=False, finish_reason=None
    )
    last, reason = typed_chunks(
        parser,
        index=0,
        token_id=2,
        text=f"{WEATHER[-5:]}, {TIME}]",
        usage=usage,
        logprobs=(),
        is_finished=True,
        finish_reason=FinishReason.STOP,
    )
    assert reason is FinishReason.TOOL_CALLS
    assert [c.token_ids for c in first] == [(1,)] and last[0].token_ids == (2,)
    # The end of call 0's arguments, then call 1 (id, name and arguments merged into one chunk).
    assert [(c.tool_call.index, c.tool_call.name, c.tool_call.arguments) for c in last] == [
        (0, "", WEATHER[-5:-1]),
        (1, "get_time", '{"timezone": "UTC"}'),
    ]


def test_tool_prompt_asks_for_an_array_only_when_parallel_and_writes_several_past_calls_as_one() -> None:
    tools = (Tool("get_weather"), Tool("get_time"))
    both = (ToolCall("c1", "get_weather", '{"city": "Oslo"}'), ToolCall("c2", "get_time", '{"timezone": "CET"}'))
    messages = (ChatMessage("user", "Weather and time in Oslo?"), ChatMessage("assistant", "", tool_calls=both))
    assert with_tools(messages, tools)[0].content.startswith(TOOL_INSTRUCTIONS)
    out = with_tools(messages, tools, parallel=True)
    assert out[0].content.startswith(PARALLEL_TOOL_INSTRUCTIONS) and PARALLEL_TOOL_INSTRUCTIONS != TOOL_INSTRUCTIONS
    assert json.loads(out[2].content) == [
        {"name": "get_weather", "arguments": {"city": "Oslo"}},
        {"name": "get_time", "arguments": {"timezone": "CET"}},
    ]
    # What the prompt writes, the parser reads back as the same calls.
    deltas, _ = feed(out[2].content, 2)
    assert [(n, a) for _, n, a in calls(deltas)] == [("get_weather", {"city": "Oslo"}), ("get_time", {"timezone": "CET"})]


def test_parallel_tool_calls_needs_tools() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_chat(ChatInput((ChatMessage("user", "hi"),), parallel_tool_calls=True))
    assert caught.value.field == "chat.parallel_tool_calls"
    check_chat(ChatInput((ChatMessage("user", "hi"),), (Tool("f"),), parallel_tool_calls=True))


# --- the bundled model over a real channel -------------------------------------------------

PARAMETERS = {
    "get_weather": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "get_time": {
        "type": "object",
        "properties": {"timezone": {"type": "string", "maxLength": 20}},
        "required": ["timezone"],
        "additionalProperties": False,
    },
}


def envelope(name: str) -> dict:
    properties = {"name": {"const": name}, "arguments": PARAMETERS[name]}
    return {"type": "object", "properties": properties, "required": ["name", "arguments"], "additionalProperties": False}


#: Test-only: exactly two calls of any of the tools (the gateway's ``required`` asks for minItems 1).
TWO_CALLS = {"type": "array", "items": {"anyOf": [envelope(n) for n in PARAMETERS]}, "minItems": 2, "maxItems": 2}


async def test_a_constraint_forcing_two_calls_gives_two_typed_call_streams(engine_address: str, engine_core) -> None:
    request = pb.GenerateRequest(
        chat=pb.ChatInput(
            messages=[pb.ChatMessage(role="user", content="What are the weather and the time in Paris?")],
            tools=[pb.Tool(name=n, parameters_json=json.dumps(p)) for n, p in PARAMETERS.items()],
            parallel_tool_calls=True,
        ),
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=96),
        constraint=pb.Constraint(json_schema=json.dumps(TWO_CALLS)),
    )
    cache = engine_core.tokenizer.constraint_compiler(engine_core.limits.vocab_size).cache
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        stub = engine_pb2_grpc.EngineServiceStub(channel)
        responses = [r async for r in stub.Generate(request)]
        hits = cache.hits
        again = [r async for r in stub.Generate(request)]
    assert cache.hits > hits, "the array schema compiles once"
    for stream in (responses, again):
        chunks = [r.chunk for r in stream if r.WhichOneof("event") == "chunk"]
        [complete] = [r.complete for r in stream if r.WhichOneof("event") == "complete"]
        assert complete.finish_reason == pb.FINISH_REASON_TOOL_CALLS
        assert "".join(c.text for c in chunks) == ""
        deltas = [c.tool_call for c in chunks if c.kind == pb.DELTA_KIND_TOOL_CALL]
        assert sorted({d.index for d in deltas}) == [0, 1]
        for index in (0, 1):
            mine = [d for d in deltas if d.index == index]
            assert mine[0].id.startswith("call_") and mine[0].name in PARAMETERS
            assert all(not d.id and not d.name for d in mine[1:])
            jsonschema.validate(json.loads("".join(d.arguments for d in mine)), PARAMETERS[mine[0].name])
        first_of_1 = next(i for i, d in enumerate(deltas) if d.index == 1)
        assert all(d.index == 0 for d in deltas[:first_of_1]), "call 0 ends before call 1 starts"
        assert deltas[0].id != deltas[first_of_1].id


async def test_parallel_tool_calls_without_tools_is_invalid_argument(engine_address: str) -> None:
    request = pb.GenerateRequest(
        chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hi")], parallel_tool_calls=True)
    )
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        stub = engine_pb2_grpc.EngineServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in stub.Generate(request)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chat.parallel_tool_calls" in caught.value.details()
