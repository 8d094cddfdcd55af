"""Hypothesis over every memory RPC's request message, sent to a real memory server on SQLite.

Fields take values from their types' whole ranges (tests/common/proto_fuzz.py). Each call must
answer or refuse with a typed status (never INTERNAL/UNKNOWN) within a deadline; afterwards the
server still serves, and a turn stored before the fuzzing is still there (a refused request
never damages what is stored). Forget is left out of the draw: a valid Forget deletes by design.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from tests.common.proto_fuzz import TYPED_STATUSES, messages
from tests.memory.conftest import TEST_LIMITS

SENTINEL = "fuzz-sentinel-7f3a"
RPCS = {
    "AppendTurns": memory_pb2.AppendTurnsRequest,
    "GetContext": memory_pb2.GetContextRequest,
    "ListTopics": memory_pb2.ListTopicsRequest,
    "Summarize": memory_pb2.SummarizeRequest,
    "Search": memory_pb2.SearchRequest,
    "PutResponse": memory_pb2.PutResponseRequest,
    "GetResponse": memory_pb2.GetResponseRequest,
    "DeleteResponse": memory_pb2.DeleteResponseRequest,
}


@pytest.fixture(scope="module")
def memory_stub(tmp_path_factory: pytest.TempPathFactory, hosted, memory_server) -> Iterator[memory_pb2_grpc.MemoryServiceStub]:
    folder: Path = tmp_path_factory.mktemp("memory-fuzz")
    with hosted(memory_server(folder / "memory.sqlite3", TEST_LIMITS, None), "memory-fuzz") as served:
        with grpc.insecure_channel(served.address) as channel:
            stub = memory_pb2_grpc.MemoryServiceStub(channel)
            stub.AppendTurns(
                memory_pb2.AppendTurnsRequest(
                    session_id=SENTINEL, topic_id=SENTINEL, turns=[memory_pb2.Turn(role="user", content="keep me")]
                ),
                timeout=10,
            )
            yield stub
            # What was stored before the fuzzing is intact after it.
            context = stub.GetContext(
                memory_pb2.GetContextRequest(policy=memory_pb2.MEMORY_POLICY_SESSION_WINDOW, session_id=SENTINEL), timeout=10
            )
            assert [t.content for t in context.turns][:1] == ["keep me"], context


@settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(method=st.sampled_from(sorted(RPCS)), data=st.data())
def test_every_rpc_answers_or_refuses_with_a_typed_status(memory_stub, method: str, data: st.DataObject) -> None:
    request = data.draw(messages(RPCS[method]), label="request")
    try:
        getattr(memory_stub, method)(request, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in TYPED_STATUSES, (method, error.code(), error.details(), request)
        assert error.details()
