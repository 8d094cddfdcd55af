"""The one client-side RPC module over real channels: what a failure becomes on either side.

FieldEngine is a deliberate fake whose only job is to fail in known ways; the happy
paths run on the real engine in the gateway and router tests.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import grpc
import pytest
from quartet.engine.v1 import engine_pb2, engine_pb2_grpc

from quartet.services.common.engine_client import EngineClient
from quartet.services.common.errors import Aborted, Internal, InvalidArgument, ResourceExhausted, Unavailable
from quartet.services.common.grpc_server import build_server
from quartet.services.common.rpc import Deadlines, ServiceChannel, Upstream, error_from_status
from quartet.services.gateway.errors import openai_param
from quartet.services.router.engine_client import EngineClient as RouterEngineClient
from quartet.services.router.domain import EngineRequest
from quartet.services.router.agents import Priority

SERVICE = engine_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name


class FieldEngine(engine_pb2_grpc.EngineServiceServicer):
    """Refuses every request naming a bad field, or fails Generate inside its stream."""

    def __init__(self) -> None:
        self.generate_cancelled = asyncio.Event()

    async def CountTokens(self, request, context):
        raise InvalidArgument("messages[0].role must be user, assistant or system", field="chat.messages")

    async def GetModelInfo(self, request, context):
        await asyncio.sleep(5)  # longer than any deadline below

    async def Generate(self, request, context):
        if request.request_id == "in-stream":
            yield engine_pb2.GenerateResponse(error=engine_pb2.Error(code="RESOURCE_EXHAUSTED", message="queue is full"))
            return
        if request.request_id == "hang":
            yield engine_pb2.GenerateResponse(chunk=engine_pb2.Chunk(text="a"))
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.generate_cancelled.set()
                raise
        raise InvalidArgument("stop has too many entries", field="stopping.stop")


@pytest.fixture()
async def engine():
    fake = FieldEngine()
    built = build_server(
        "127.0.0.1:0", lambda s: engine_pb2_grpc.add_EngineServiceServicer_to_server(fake, s), [SERVICE]
    )
    await built.start()
    yield f"127.0.0.1:{built.port}", fake
    await built.stop(0)


def _upstream(address: str, *, rpc_seconds: float = 5.0, **kwargs) -> Upstream:
    channel = ServiceChannel("engine", address, connect_timeout_seconds=0.5, drain_seconds=0.1)
    return Upstream(channel, Deadlines(rpc_seconds=rpc_seconds, stream_seconds=5.0), **kwargs)


async def test_the_router_keeps_the_field_trailer(engine) -> None:
    address, _ = engine
    client = RouterEngineClient(address)
    try:
        with pytest.raises(InvalidArgument) as unary:
            await client.count_tokens(text="hi")
        request = EngineRequest(request_id="r", priority=Priority.DEFAULT, max_tokens=4, temperature=0.0, text="hi")
        with pytest.raises(InvalidArgument) as streamed:
            _ = [event async for event in client.generate(request)]
    finally:
        await client.close()
    assert unary.value.field == "chat.messages"
    assert unary.value.message == "messages[0].role must be user, assistant or system"
    assert streamed.value.field == "stopping.stop"


async def test_the_gateway_names_the_field_as_an_openai_param(engine) -> None:
    address, _ = engine
    client = EngineClient(_upstream(address, field_name=openai_param))
    try:
        with pytest.raises(InvalidArgument) as caught:
            await client.count_tokens(engine_pb2.CountTokensRequest(text="hi"))
    finally:
        await client.close()
    assert caught.value.field == "messages"


async def test_an_in_stream_error_event_is_its_typed_error(engine) -> None:
    address, _ = engine
    client = EngineClient(_upstream(address))
    try:
        stream = client.generate(engine_pb2.GenerateRequest(request_id="in-stream", text="hi"))
        with pytest.raises(ResourceExhausted, match="queue is full"):
            await stream.peek()
    finally:
        await client.close()


async def test_leaving_a_stream_early_cancels_the_call_in_the_server(engine) -> None:
    address, fake = engine
    client = EngineClient(_upstream(address))
    try:
        stream = client.generate(engine_pb2.GenerateRequest(request_id="hang", text="hi"))
        async with aclosing(stream.events()) as events:
            async for event in events:
                assert event.chunk.text == "a"
                break
        await asyncio.wait_for(fake.generate_cancelled.wait(), 5)
    finally:
        await client.close()


async def test_closing_the_router_generate_early_cancels_the_engine_call(engine) -> None:
    address, fake = engine
    client = RouterEngineClient(address)
    request = EngineRequest(request_id="hang", priority=Priority.DEFAULT, max_tokens=4, temperature=0.0, text="hi")
    try:
        async with aclosing(client.generate(request)) as events:
            async for delta in events:
                assert delta.text == "a"
                break
        await asyncio.wait_for(fake.generate_cancelled.wait(), 5)
    finally:
        await client.close()


async def test_every_unary_call_has_its_deadline(engine) -> None:
    address, _ = engine
    client = EngineClient(_upstream(address, rpc_seconds=0.2))
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(Exception) as caught:
            await client.model_info()
    finally:
        await client.close()
    assert asyncio.get_running_loop().time() - started < 2
    assert caught.value.grpc_code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not finish in time" in caught.value.message


async def test_a_down_service_fails_fast_naming_it() -> None:
    client = EngineClient(_upstream("127.0.0.1:1"))
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(Unavailable) as caught:
            await client.model_info()
    finally:
        await client.close()
    assert asyncio.get_running_loop().time() - started < 3
    assert caught.value.message.startswith("engine unavailable at 127.0.0.1:1: ")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.CANCELLED, Aborted),
        (grpc.StatusCode.OUT_OF_RANGE, InvalidArgument),
        (grpc.StatusCode.DATA_LOSS, Internal),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
    ],
)
def test_status_codes_keep_their_meaning(code: grpc.StatusCode, expected: type) -> None:
    error = error_from_status(code, "details", service="memory", address="m:1", field="turns")
    assert type(error) is expected
    assert error.http_status == expected.http_status
