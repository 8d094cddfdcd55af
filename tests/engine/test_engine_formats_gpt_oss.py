"""Harmony end to end: a tiny random gpt-oss (full o200k vocabulary) served over a real channel.

The weights are random, so the text is noise; what must hold is the format:
constrained requests start in the final channel or inside the forced call
(Harmony prefills), the grammar over the o200k_harmony vocabulary keeps the
body valid, and the parser turns the tokens into typed deltas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import jsonschema
import pytest
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.engine.core import EngineCore
from quartet.services.engine.settings import EngineSettings
from tests.engine.gpt_oss_tiny import write_tiny_gpt_oss

ARGUMENTS = {
    "type": "object",
    "properties": {"city": {"enum": ["Oslo", "Paris"]}, "days": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER = pb.Tool(name="get_weather", description="Weather forecast", parameters_json=json.dumps(ARGUMENTS))
CHAT = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Weather in Oslo for 3 days?")], tools=[WEATHER])


@pytest.fixture(scope="module")
def gpt_oss_address(tmp_path_factory, hosted, engine_server) -> Iterator[str]:
    directory = write_tiny_gpt_oss(tmp_path_factory.mktemp("gpt-oss") / "model", vocab_size=201_088)
    core = EngineCore.from_settings(
        EngineSettings(_env_file=None, model_id=str(directory), backend="native", max_model_len=512)
    )
    with hosted(engine_server(core, close_core=True), "gpt-oss-server") as served:
        yield served.address


@pytest.fixture
async def stub(gpt_oss_address: str):
    async with grpc.aio.insecure_channel(gpt_oss_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def generate(stub, constraint: pb.Constraint | None, n: int = 1):
    request = pb.GenerateRequest(
        chat=CHAT,
        sampling=pb.SamplingParams(temperature=1.0, seed=4, n=n),
        stopping=pb.StoppingCriteria(max_tokens=48),
        constraint=constraint,
    )
    chunks, completes = [], []
    async for response in stub.Generate(request):
        kind = response.WhichOneof("event")
        assert kind != "error", response.error
        (chunks if kind == "chunk" else completes).append(getattr(response, kind))
    return chunks, completes


async def test_model_info_and_harmony_eos(stub) -> None:
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.architecture == "gpt_oss" and info.vocab_size == 201_088
    assert set(info.eos_token_ids) == {200002, 200012, 199999}  # <|return|>, <|call|>, <|endoftext|>
    count = await stub.CountTokens(pb.CountTokensRequest(chat=CHAT))
    tokens = await stub.Tokenize(pb.TokenizeRequest(chat=CHAT))
    assert count.num_tokens == len(tokens.token_ids) > 50  # system + developer (tools) + user


async def test_forced_tool_call_is_a_typed_call_with_valid_arguments(stub) -> None:
    chunks, completes = await generate(stub, pb.Constraint(tool_name="get_weather"), n=2)
    for index in (0, 1):
        calls = [c.tool_call for c in chunks if c.index == index and c.kind == pb.DELTA_KIND_TOOL_CALL]
        assert calls[0].name == "get_weather" and calls[0].id.startswith("call_")
        jsonschema.validate(json.loads("".join(c.arguments for c in calls)), ARGUMENTS)
        assert all(
            c.kind == pb.DELTA_KIND_TOOL_CALL for c in chunks if c.index == index and (c.text or c.tool_call.arguments)
        )
    assert [c.finish_reason for c in completes] == [pb.FINISH_REASON_TOOL_CALLS] * 2


async def test_json_schema_answer_is_final_channel_content(stub) -> None:
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}
    chunks, completes = await generate(stub, pb.Constraint(json_schema=json.dumps(schema)))
    assert {c.kind for c in chunks if c.text} == {pb.DELTA_KIND_CONTENT}
    jsonschema.validate(json.loads("".join(c.text for c in chunks)), schema)
    assert completes[0].finish_reason == pb.FINISH_REASON_STOP
