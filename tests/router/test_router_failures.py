"""Engine failures during Run, made to happen by FailingEngine, a fake engine that exists
only to fail (the happy path always runs on the real engine)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc
from quartet.memory.v1 import memory_pb2
from quartet.router.v1 import router_pb2 as pb

from quartet.services.common.errors import InvalidArgument
from quartet.services.common.grpc_server import FIELD_METADATA_KEY, build_server


class FailingEngine(engine_pb2_grpc.EngineServiceServicer):
    """Counts tokens plausibly, then fails Generate: after one chunk, before any, or refusing a field."""

    def __init__(self, fail_after_chunk: bool, refuse_field: str = "") -> None:
        self.fail_after_chunk = fail_after_chunk
        self.refuse_field = refuse_field

    async def CountTokens(self, request, context):
        return engine_pb2.CountTokensResponse(num_tokens=10, context_length=8192)

    async def Generate(self, request, context) -> AsyncIterator[engine_pb2.GenerateResponse]:
        if self.refuse_field:
            raise InvalidArgument("the engine refuses this", field=self.refuse_field)
        if self.fail_after_chunk:
            yield engine_pb2.GenerateResponse(chunk=engine_pb2.Chunk(text="Once upon"))
            yield engine_pb2.GenerateResponse(error=engine_pb2.Error(code="INTERNAL", message="decode step failed"))
        else:
            yield engine_pb2.GenerateResponse(error=engine_pb2.Error(code="RESOURCE_EXHAUSTED", message="queue is full"))


async def failing_engine(fail_after_chunk: bool, refuse_field: str = ""):
    fake = FailingEngine(fail_after_chunk, refuse_field)
    built = build_server(
        "127.0.0.1:0",
        lambda server: engine_pb2_grpc.add_EngineServiceServicer_to_server(fake, server),
        [engine_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name],
    )
    await built.start()
    return built


async def test_failure_mid_stream_is_a_run_error_and_nothing_is_stored(memory, router_server):
    built = await failing_engine(fail_after_chunk=True)
    sid = f"s-{uuid.uuid4().hex[:8]}"
    try:
        async with router_server(f"127.0.0.1:{built.port}", memory.address) as router:
            events = [e async for e in router.stub.Run(pb.RunRequest(agent="chat", input="A story?", session_id=sid))]
    finally:
        await built.stop(None)
    assert [e.WhichOneof("event") for e in events] == ["token", "error"]
    assert events[0].token.text == "Once upon"
    assert "decode step failed" in events[1].error.message
    context = await memory.stub.GetContext(
        memory_pb2.GetContextRequest(policy=memory_pb2.MEMORY_POLICY_SESSION_WINDOW, session_id=sid)
    )
    assert len(context.turns) == 0


@pytest.mark.parametrize("rpc", ["Run", "Route"])
async def test_failure_before_any_text_keeps_its_status(memory, rpc, router_server):
    built = await failing_engine(fail_after_chunk=False)
    try:
        async with router_server(f"127.0.0.1:{built.port}", memory.address) as router:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if rpc == "Run":
                    await router.stub.Run(pb.RunRequest(agent="chat", input="hi", session_id="s")).read()
                else:
                    await router.stub.Route(pb.RouteRequest(input="Where is Boston?"))
    finally:
        await built.stop(None)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == "queue is full"


async def test_engine_down_is_unavailable(memory, router_server):
    async with router_server("127.0.0.1:1", memory.address) as router:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await router.stub.Route(pb.RouteRequest(input="Where is Boston?"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "engine unavailable at 127.0.0.1:1" in caught.value.details()


async def test_the_engine_field_trailer_passes_through_the_router(memory, router_server):
    # The router re-raises the engine's refusal with its field, so the gateway can name the
    # OpenAI param; before common.rpc the router dropped the trailer here.
    built = await failing_engine(fail_after_chunk=False, refuse_field="chat.messages")
    try:
        async with router_server(f"127.0.0.1:{built.port}", memory.address) as router:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await router.stub.Run(pb.RunRequest(agent="chat", input="hi", session_id="s")).read()
    finally:
        await built.stop(None)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (FIELD_METADATA_KEY, "chat.messages") in tuple(caught.value.trailing_metadata())
