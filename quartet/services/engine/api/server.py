"""The engine's gRPC servicer: proto in, EngineCore, proto out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.errors import InvalidArgument
from quartet.services.common.grpc_server import GrpcServer, build_server
from quartet.services.engine.api import convert
from quartet.services.engine.core import EngineCore
from quartet.services.engine.api.request import ChatInput, TextInput

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EngineService"].full_name


class EngineServicer(engine_pb2_grpc.EngineServiceServicer):
    def __init__(self, core: EngineCore) -> None:
        self.core = core

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        stream = self.core.generate(convert.generate_request_from_pb(request))
        try:
            async for event in stream:
                yield convert.event_to_pb(event)
        finally:
            await stream.aclose()  # on cancellation this aborts the request in the engine

    async def Abort(self, request: pb.AbortRequest, context: grpc.aio.ServicerContext) -> pb.AbortResponse:
        return pb.AbortResponse(found=await self.core.abort(request.request_id))

    async def Tokenize(self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext) -> pb.TokenizeResponse:
        ids = await self.core.tokenize(_text_or_chat(request), add_special_tokens=request.add_special_tokens)
        return pb.TokenizeResponse(token_ids=ids)

    async def CountTokens(
        self, request: pb.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountTokensResponse:
        count = await self.core.count_tokens(_text_or_chat(request))
        return pb.CountTokensResponse(num_tokens=count, context_length=self.core.limits.context_length)

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        return convert.model_info_to_pb(self.core.model_info())


def _text_or_chat(request: pb.TokenizeRequest | pb.CountTokensRequest) -> TextInput | ChatInput:
    prompt = convert.input_from_pb(request)
    if prompt is None:
        raise InvalidArgument("input: set text or chat", field="input")
    return prompt  # type: ignore[return-value]


def create_server(address: str, core: EngineCore) -> GrpcServer:
    """A built, not yet started engine server on ``address`` ("127.0.0.1:0" picks a free port)."""
    servicer = EngineServicer(core)
    return build_server(
        address, lambda server: engine_pb2_grpc.add_EngineServiceServicer_to_server(servicer, server), [SERVICE_NAME]
    )
