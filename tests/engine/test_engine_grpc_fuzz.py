"""Hypothesis over the engine's gRPC request messages, sent to the real engine server.

Every field of GenerateRequest, TokenizeRequest and CountTokensRequest takes values from its
type's whole range (see tests/common/proto_fuzz.py). The answer must be a finished stream or a
typed status (INVALID_ARGUMENT, ...), never INTERNAL/UNKNOWN, within a deadline, and the engine
must still serve afterwards. The one bound: a Generate that passes validation may ask for
billions of tokens (or, leaving max_tokens out, the rest of the context), which is legal and
merely slow on a CPU, so every request's max_tokens is at most 4 and n at most 3.
"""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc

from tests.common.proto_fuzz import TYPED_STATUSES, messages

DEADLINE_S = 60
FUZZ = settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
SMALL = {
    "quartet.engine.v1.StoppingCriteria.max_tokens": st.integers(0, 4),
    "quartet.engine.v1.SamplingParams.n": st.integers(0, 3),
}


@pytest.fixture(scope="module")
def stub(engine_address: str):
    with grpc.insecure_channel(engine_address) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel), health_pb2_grpc.HealthStub(channel)


def _bounded(request: engine_pb2.GenerateRequest) -> engine_pb2.GenerateRequest:
    if not request.stopping.HasField("max_tokens") or request.stopping.max_tokens > 4:
        request.stopping.max_tokens = 4
    return request


def _typed(error: grpc.RpcError, request) -> None:
    assert error.code() in TYPED_STATUSES, (error.code(), error.details(), request)
    assert error.details(), "a refusal says what was wrong"


@FUZZ
@given(request=messages(engine_pb2.GenerateRequest, overrides=SMALL).map(lambda r: _bounded(r)))
def test_generate_requests(stub, request: engine_pb2.GenerateRequest) -> None:
    engine, health = stub
    try:
        events = [r.WhichOneof("event") for r in engine.Generate(request, timeout=DEADLINE_S)]
    except grpc.RpcError as error:
        _typed(error, request)
    else:
        assert events and events[-1] in ("complete", "error"), (events[-3:], request)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


@FUZZ
@given(
    method=st.sampled_from(["Tokenize", "CountTokens"]),
    data=st.data(),
)
def test_unary_requests(stub, method: str, data: st.DataObject) -> None:
    engine, _ = stub
    cls = {"Tokenize": engine_pb2.TokenizeRequest, "CountTokens": engine_pb2.CountTokensRequest}[method]
    request = data.draw(messages(cls), label="request")
    try:
        getattr(engine, method)(request, timeout=DEADLINE_S)
    except grpc.RpcError as error:
        _typed(error, request)
