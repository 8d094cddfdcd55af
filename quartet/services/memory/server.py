"""The memory gRPC servicer: a thin adapter from memory.v1 to MemoryCore."""

from __future__ import annotations

import grpc
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from quartet.services.common.grpc_server import GrpcServer, build_server
from quartet.services.memory import convert
from quartet.services.memory.core import MemoryCore

SERVICE_NAME = memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name


class MemoryServicer(memory_pb2_grpc.MemoryServiceServicer):
    def __init__(self, core: MemoryCore) -> None:
        self.core = core

    async def AppendTurns(self, request: memory_pb2.AppendTurnsRequest, context: grpc.aio.ServicerContext) -> memory_pb2.AppendTurnsResponse:
        turns = [convert.turn_from_pb(t) for t in request.turns]
        num_turns = await self.core.append_turns(request.session_id, request.topic_id, turns)
        return memory_pb2.AppendTurnsResponse(num_turns=num_turns)

    async def GetContext(self, request: memory_pb2.GetContextRequest, context: grpc.aio.ServicerContext) -> memory_pb2.GetContextResponse:
        return convert.context_to_pb(await self.core.get_context(convert.query_from_pb(request)))

    async def ListTopics(self, request: memory_pb2.ListTopicsRequest, context: grpc.aio.ServicerContext) -> memory_pb2.ListTopicsResponse:
        topics = await self.core.list_topics(request.session_id)
        return memory_pb2.ListTopicsResponse(topics=[convert.topic_to_pb(t) for t in topics])

    async def Forget(self, request: memory_pb2.ForgetRequest, context: grpc.aio.ServicerContext) -> memory_pb2.ForgetResponse:
        num_deleted = await self.core.forget(request.session_id, request.topic_id)
        return memory_pb2.ForgetResponse(num_deleted=num_deleted)


    async def PutResponse(self, request: memory_pb2.PutResponseRequest, context: grpc.aio.ServicerContext) -> memory_pb2.PutResponseResponse:
        created_at = await self.core.put_response(convert.record_from_pb(request))
        return memory_pb2.PutResponseResponse(created_at=created_at)

    async def GetResponse(self, request: memory_pb2.GetResponseRequest, context: grpc.aio.ServicerContext) -> memory_pb2.GetResponseResponse:
        return convert.record_to_pb(await self.core.get_response(request.response_id))

    async def DeleteResponse(
        self, request: memory_pb2.DeleteResponseRequest, context: grpc.aio.ServicerContext
    ) -> memory_pb2.DeleteResponseResponse:
        await self.core.delete_response(request.response_id)
        return memory_pb2.DeleteResponseResponse(deleted=True)


    async def Summarize(self, request: memory_pb2.SummarizeRequest, context: grpc.aio.ServicerContext) -> memory_pb2.SummarizeResponse:
        stored, summary = await self.core.summarize(request.topic_id, request.content, request.num_tokens, request.through_turn_id)
        return memory_pb2.SummarizeResponse(stored=stored, summary=convert.summary_to_pb(summary))

    async def Search(self, request: memory_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> memory_pb2.SearchResponse:
        hits = await self.core.search(request.query, request.topic_id, request.session_id, request.k)
        return memory_pb2.SearchResponse(hits=[convert.hit_to_pb(h) for h in hits])


def create_server(address: str, core: MemoryCore) -> GrpcServer:
    """Build (not start) the memory server; ``address`` with port 0 picks a free port."""

    def register(server: grpc.aio.Server) -> None:
        memory_pb2_grpc.add_MemoryServiceServicer_to_server(MemoryServicer(core), server)

    return build_server(address, register, [SERVICE_NAME])
