"""Constrained generation with the bundled model over a real gRPC channel: the output always fits."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import grpc
import jsonschema
import pytest
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SHOPPING = {
    "type": "object",
    "properties": {
        "store": {"enum": ["market", "bakery", "pharmacy"]},
        "items": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "urgent": {"type": "boolean"},
    },
    "required": ["store", "items", "urgent"],
    "additionalProperties": False,
}
NESTED = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "location": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "required": ["lat", "lon"],
        },
    },
    "required": ["city", "location"],
}
WEATHER_TOOL = pb.Tool(
    name="get_weather",
    description="Current weather for a city",
    parameters_json=json.dumps(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        }
    ),
)


def chat(text: str, tools=()) -> pb.ChatInput:
    return pb.ChatInput(messages=[pb.ChatMessage(role="user", content=text)], tools=tools)


@pytest.fixture
async def stub(engine_address: str):
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def generate(stub, constraint: pb.Constraint, prompt: pb.ChatInput, *, sampling=None, max_tokens: int = 96):
    request = pb.GenerateRequest(
        chat=prompt,
        sampling=sampling or pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=max_tokens),
        constraint=constraint,
    )
    chunks, completes = [], []
    async for response in stub.Generate(request):
        kind = response.WhichOneof("event")
        assert kind != "error", response.error
        (chunks if kind == "chunk" else completes).append(getattr(response, kind))
    texts = {}
    for chunk in chunks:
        texts[chunk.index] = texts.get(chunk.index, "") + chunk.text
    return texts, chunks, completes


@pytest.mark.parametrize(
    "schema,prompt",
    [
        (PERSON, "Describe a person as JSON."),
        (SHOPPING, "I need bread and milk soon. Make the shopping list as JSON."),
        (NESTED, "Where is Paris? Answer as JSON with coordinates."),
    ],
    ids=["person", "enum-array-boolean", "nested"],
)
async def test_json_schema_output_parses_and_validates_greedy_and_sampled(stub, schema: dict, prompt: str) -> None:
    constraint = pb.Constraint(json_schema=json.dumps(schema))
    for sampling in (pb.SamplingParams(temperature=0), pb.SamplingParams(temperature=1.0, seed=3, n=2)):
        texts, _, completes = await generate(stub, constraint, chat(prompt), sampling=sampling)
        for index, text in texts.items():
            jsonschema.validate(json.loads(text), schema)
            assert completes[index].finish_reason == pb.FINISH_REASON_STOP


async def test_router_decision_schema_works_as_a_constraint(stub) -> None:
    schema = json.loads((ROOT / "schemas" / "router_decision.json").read_text())
    texts, _, completes = await generate(
        stub, pb.Constraint(json_schema=json.dumps(schema)), chat("What's the weather like in Lyon tomorrow?")
    )
    decision = json.loads(texts[0])
    jsonschema.validate(decision, schema)
    assert completes[0].finish_reason == pb.FINISH_REASON_STOP


async def test_json_object_is_an_object(stub) -> None:
    texts, _, _ = await generate(stub, pb.Constraint(json_object=True), chat("Give me some data."))
    assert isinstance(json.loads(texts[0]), dict)


async def test_regex_matches_the_whole_output(stub) -> None:
    pattern = r"[0-9]{3}-[0-9]{4}"
    texts, _, completes = await generate(stub, pb.Constraint(regex=pattern), chat("Make up a phone number."))
    assert re.fullmatch(pattern, texts[0]), texts[0]
    assert completes[0].finish_reason == pb.FINISH_REASON_STOP


async def test_choice_returns_one_of_the_choices(stub) -> None:
    choices = ["Paris", "Berlin", "Lyon in France"]
    sampling = pb.SamplingParams(temperature=1.5, seed=11, n=3)
    texts, _, _ = await generate(
        stub, pb.Constraint(choice=pb.ChoiceList(choices=choices)), chat("Name a city."), sampling=sampling
    )
    assert len(texts) == 3 and all(text in choices for text in texts.values()), texts


async def test_gbnf_grammar(stub) -> None:
    grammar = 'root ::= "The answer is " color "."\ncolor ::= "red" | "green" | "blue"'
    texts, _, _ = await generate(stub, pb.Constraint(grammar=grammar), chat("What colour is the sky?"))
    assert re.fullmatch(r"The answer is (red|green|blue)\.", texts[0]), texts[0]


async def test_invalid_schema_is_invalid_argument_with_the_compilers_message(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await generate(stub, pb.Constraint(json_schema='{"type": "nonsense"}'), chat("hi"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "constraint.json_schema" in caught.value.details()
    assert 'Unsupported type "nonsense"' in caught.value.details()


async def test_forced_tool_call_streams_a_typed_call_and_ends_with_tool_calls(stub) -> None:
    _, chunks, completes = await generate(
        stub, pb.Constraint(tool_name="get_weather"), chat("What's the weather in Paris?", tools=[WEATHER_TOOL])
    )
    calls = [c.tool_call for c in chunks if c.kind == pb.DELTA_KIND_TOOL_CALL]
    assert calls and calls[0].name == "get_weather" and calls[0].id.startswith("call_")
    assert all(not c.name and not c.id for c in calls[1:])
    assert all(c.index == 0 for c in calls)
    arguments = json.loads("".join(c.arguments for c in calls))
    jsonschema.validate(arguments, json.loads(WEATHER_TOOL.parameters_json))
    assert "".join(c.text for c in chunks) == ""
    assert completes[0].finish_reason == pb.FINISH_REASON_TOOL_CALLS


async def test_repeated_constraint_hits_the_grammar_cache(engine_core) -> None:
    from quartet.services.engine.api.request import (
        ChatInput,
        ChatMessage,
        Constraint,
        GenerateRequest,
        SamplingParams,
        StoppingCriteria,
    )

    request = GenerateRequest(
        input=ChatInput((ChatMessage("user", "Pick one."),)),
        sampling=SamplingParams(temperature=0),
        stopping=StoppingCriteria(max_tokens=8),
        constraint=Constraint("choice", ("left", "right")),
    )
    [event async for event in engine_core.generate(request)]
    cache = engine_core.tokenizer.constraint_compiler(engine_core.limits.vocab_size).cache
    hits = cache.hits
    [event async for event in engine_core.generate(request)]
    assert cache.hits > hits


async def test_a_constrained_request_joins_a_running_batch(stub) -> None:
    # Regression: a grammar-constrained sequence decoding behind unconstrained ones broke the
    # batch's mask indexing and took the engine's worker down for everyone.
    async def plain() -> str:
        request = pb.GenerateRequest(
            chat=chat("Tell me a story about a fox."),
            sampling=pb.SamplingParams(temperature=0),
            stopping=pb.StoppingCriteria(max_tokens=40, ignore_eos=True),
        )
        text = ""
        async for response in stub.Generate(request):
            assert response.WhichOneof("event") != "error", response.error
            text += response.chunk.text
        return text

    background = [asyncio.create_task(plain()) for _ in range(2)]
    await asyncio.sleep(0.5)  # let both start decoding before the constrained one arrives
    grammar = 'root ::= "The answer is " color "."\ncolor ::= "red" | "green" | "blue"'
    texts, _, _ = await generate(stub, pb.Constraint(grammar=grammar), chat("What colour is the sky?"))
    assert re.fullmatch(r"The answer is (red|green|blue)\.", texts[0]), texts[0]
    assert all(await asyncio.gather(*background))
