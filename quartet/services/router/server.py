"""The router gRPC servicer: a thin adapter from router.v1 to RouterCore."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from quartet.router.v1 import router_pb2, router_pb2_grpc

from quartet.services.common.grpc_server import GrpcServer, build_server
from quartet.services.router import convert
from quartet.services.router.core import RouterCore

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, core: RouterCore) -> None:
        self.core = core

    async def Route(self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext) -> router_pb2.RouteResponse:
        decision = await self.core.route(convert.route_input_from_pb(request))
        return convert.decision_to_pb(decision)

    async def Run(self, request: router_pb2.RunRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[router_pb2.RunResponse]:
        events = self.core.run(convert.run_input_from_pb(request))
        try:
            async for event in events:
                yield convert.run_event_to_pb(event)
        finally:
            await events.aclose()  # on client cancel: cancels the engine call, stores nothing

    async def ListAgents(self, request: router_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext) -> router_pb2.ListAgentsResponse:
        return router_pb2.ListAgentsResponse(agents=[convert.agent_to_pb(a) for a in self.core.list_agents()])


def create_server(address: str, core: RouterCore) -> GrpcServer:
    """Build (not start) the router server; ``address`` with port 0 picks a free port."""

    def register(server: grpc.aio.Server) -> None:
        router_pb2_grpc.add_RouterServiceServicer_to_server(RouterServicer(core), server)

    return build_server(address, register, [SERVICE_NAME])
