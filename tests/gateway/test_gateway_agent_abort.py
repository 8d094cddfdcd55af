"""An agent turn the engine aborted is an error at the gateway, never finish_reason "length".

AbortingRouter is a deliberate fake router (on a real gRPC server, port 0) whose only job is
to end a turn with ABORT, which the real engine will not do on demand.
"""

from __future__ import annotations

import pytest
from quartet.engine.v1 import engine_pb2
from quartet.router.v1 import router_pb2, router_pb2_grpc

from quartet.services.common.errors import Aborted
from quartet.services.common.grpc_server import build_server
from quartet.services.common.rpc import Deadlines, ServiceChannel, Upstream
from quartet.services.gateway.agent_chat import AgentTurn
from quartet.services.gateway.chat_completion import CompletionInfo
from quartet.services.gateway.router_client import RouterClient

SERVICE = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


class AbortingRouter(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, reason: int) -> None:
        self.reason = reason

    async def Run(self, request, context):
        yield router_pb2.RunResponse(token=router_pb2.RunToken(text="Once upon"))
        usage = engine_pb2.Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9)
        yield router_pb2.RunResponse(done=router_pb2.RunDone(finish_reason=self.reason, usage=usage))


async def turn(reason: int) -> tuple[AgentTurn, RouterClient, object]:
    built = build_server(
        "127.0.0.1:0", lambda s: router_pb2_grpc.add_RouterServiceServicer_to_server(AbortingRouter(reason), s), [SERVICE]
    )
    await built.start()
    channel = ServiceChannel("router", f"127.0.0.1:{built.port}", connect_timeout_seconds=0.5, drain_seconds=0.1)
    client = RouterClient(Upstream(channel, Deadlines(rpc_seconds=5, stream_seconds=5)), cache_seconds=0)
    info = CompletionInfo(id="c", created=1, model="agent/chat", include_usage=True)
    agent_turn = AgentTurn(client, router_pb2.RunRequest(agent="chat", input="hi"), info)
    await agent_turn.start()
    return agent_turn, client, built


async def test_an_aborted_turn_is_an_error_not_length() -> None:
    agent_turn, client, built = await turn(engine_pb2.FINISH_REASON_ABORT)
    try:
        with pytest.raises(Aborted):
            await agent_turn.completion()
    finally:
        await agent_turn.close()
        await client._upstream.close()
        await built.stop(0)


async def test_a_finished_turn_reports_the_engine_reason_and_usage() -> None:
    agent_turn, client, built = await turn(engine_pb2.FINISH_REASON_LENGTH)
    try:
        chunks = [chunk async for chunk in agent_turn.chunks()]
    finally:
        await agent_turn.close()
        await client._upstream.close()
        await built.stop(0)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.model_dump() == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
