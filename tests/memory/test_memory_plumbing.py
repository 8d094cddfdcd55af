"""Health checking and server reflection on the memory server, so grpcurl works without protos."""

from __future__ import annotations

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from quartet.services.memory.server import SERVICE_NAME


async def test_health_reports_serving(memory):
    stub = health_pb2_grpc.HealthStub(memory.channel)
    for service in ("", SERVICE_NAME):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_and_describes_the_service(memory):
    stub = reflection_pb2_grpc.ServerReflectionStub(memory.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
    ]
    responses = [r async for r in stub.ServerReflectionInfo(iter(requests))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert SERVICE_NAME in names
    assert "grpc.health.v1.Health" in names
    assert responses[1].file_descriptor_response.file_descriptor_proto  # the memory.proto descriptor
