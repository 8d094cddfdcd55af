"""EngineService over a real channel to the real server with the bundled model."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS

FRANCE = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="What is the capital of France?")])


@pytest.fixture
async def stub(engine_address: str):
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def collect(stub, request: pb.GenerateRequest) -> tuple[str, list[pb.Chunk], list[pb.Complete]]:
    chunks, completes = [], []
    async for response in stub.Generate(request):
        kind = response.WhichOneof("event")
        if kind == "chunk":
            chunks.append(response.chunk)
        elif kind == "complete":
            completes.append(response.complete)
        else:
            raise AssertionError(f"unexpected error event: {response.error}")
    return "".join(c.text for c in chunks), chunks, completes


def greedy(max_tokens: int, **stopping) -> tuple[pb.SamplingParams, pb.StoppingCriteria]:
    return pb.SamplingParams(temperature=0), pb.StoppingCriteria(max_tokens=max_tokens, **stopping)


async def test_greedy_chat_answers_paris_and_is_deterministic(stub) -> None:
    sampling, stopping = greedy(40)
    request = pb.GenerateRequest(chat=FRANCE, sampling=sampling, stopping=stopping)
    first, chunks, completes = await collect(stub, request)
    second, _, _ = await collect(stub, request)
    assert "Paris" in first
    assert first == second
    assert len(completes) == 1
    complete = completes[0]
    assert complete.finish_reason == pb.FINISH_REASON_STOP
    num_tokens = sum(len(c.token_ids) for c in chunks)
    assert complete.usage.completion_tokens == num_tokens
    assert complete.usage.prompt_tokens > 10
    assert complete.usage.total_tokens == complete.usage.prompt_tokens + num_tokens
    assert chunks[-1].usage.completion_tokens == num_tokens
    assert complete.timings.total_seconds >= complete.timings.time_to_first_token_seconds > 0
    assert complete.timings.decode_tokens_per_second > 0


async def test_health_is_serving_and_reflection_lists_the_service(engine_address: str) -> None:
    async with grpc.aio.insecure_channel(engine_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "quartet.engine.v1.EngineService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        names = []
        async for reply in reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        ):
            names.extend(s.name for s in reply.list_services_response.service)
        assert "quartet.engine.v1.EngineService" in names


def test_sync_client_works_from_a_plain_test(engine_address: str) -> None:
    with grpc.insecure_channel(engine_address) as channel:
        info = engine_pb2_grpc.EngineServiceStub(channel).GetModelInfo(pb.GetModelInfoRequest())
    assert info.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info.architecture == "llama"
    assert info.backend == "native"
    assert info.context_length == 8192
    assert info.vocab_size == 49152
    assert list(info.eos_token_ids) == [2]
