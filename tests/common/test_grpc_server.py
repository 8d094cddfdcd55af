"""The shared server plumbing over a real channel: error mapping, health, reflection.

The servicer here is a deliberate fake whose only job is to fail in known ways.
"""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc

from quartet.services.common.errors import InvalidArgument, NotFound, ResourceExhausted
from quartet.services.common.grpc_server import build_server

SERVICE = engine_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name


class FailingEngine(engine_pb2_grpc.EngineServiceServicer):
    async def GetModelInfo(self, request, context):
        raise InvalidArgument("model_id must not be empty", field="model_id")

    async def CountTokens(self, request, context):
        raise ResourceExhausted("queue is full; retry later")

    async def Tokenize(self, request, context):
        raise ValueError("a bug")

    async def Generate(self, request, context):
        yield engine_pb2.GenerateResponse(chunk=engine_pb2.Chunk(text="first"))
        raise NotFound("model 'x' is not served")


@pytest.fixture()
async def server():
    built = build_server(
        "127.0.0.1:0", lambda s: engine_pb2_grpc.add_EngineServiceServicer_to_server(FailingEngine(), s), [SERVICE]
    )
    await built.start()
    yield built
    await built.stop(0)


@pytest.fixture()
async def channel(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


async def test_typed_errors_become_precise_codes(channel) -> None:
    stub = engine_pb2_grpc.EngineServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetModelInfo(engine_pb2.GetModelInfoRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_id" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CountTokens(engine_pb2.CountTokensRequest(text="x"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_unexpected_errors_are_internal_without_details(channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await engine_pb2_grpc.EngineServiceStub(channel).Tokenize(engine_pb2.TokenizeRequest(text="x"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "a bug" not in info.value.details()
    assert "Tokenize" in info.value.details()


async def test_streams_fail_after_their_first_message(channel) -> None:
    call = engine_pb2_grpc.EngineServiceStub(channel).Generate(engine_pb2.GenerateRequest(text="x"))
    first = await call.read()
    assert first.chunk.text == "first"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection(server, channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for response in stream:
        names |= {s.name for s in response.list_services_response.service}
    assert SERVICE in names and "grpc.health.v1.Health" in names


async def test_stop_reports_not_serving(server, channel) -> None:
    await server.health.enter_graceful_shutdown()
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
