"""Stored responses (``store``, ``previous_response_id``, GET and DELETE ``/v1/responses/{id}``).

A stored response keeps the answer and the conversation items it answered
(earlier turns included), so that a follow-up names only the previous
response: its items, then its output as an assistant turn, then the new input.
The records live in the memory service; ``ResponseStore`` is what the route
needs of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message
from pydantic import TypeAdapter
from quartet.memory.v1 import memory_pb2, memory_pb2_grpc

from quartet.services.common.rpc import Upstream
from quartet.services.gateway.schemas.responses_object import OutputFunctionCall, OutputMessage, Response
from quartet.services.gateway.schemas.responses_request import FunctionCallItem, InputItem, MessageItem

_ITEMS = TypeAdapter(list[InputItem])


@dataclass(slots=True)
class StoredResponse:
    response: Response
    #: The conversation the response answered, as input items (instructions excluded, as OpenAI does).
    items: list[Any]

    def to_json(self) -> bytes:
        items = [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in self.items]
        return TypeAdapter(dict).dump_json({"response": self.response.model_dump(mode="json"), "items": items})

    @classmethod
    def from_json(cls, raw: bytes) -> StoredResponse:
        record = TypeAdapter(dict).validate_json(raw)
        return cls(response=Response.model_validate(record["response"]), items=_ITEMS.validate_python(record["items"]))

    def conversation(self) -> list[Any]:
        """The items a follow-up continues: this response's conversation and then its answer."""
        answer: list[Any] = []
        for item in self.response.output:
            if isinstance(item, OutputMessage):
                answer.append(MessageItem(role="assistant", content="".join(part.text for part in item.content)))
            elif isinstance(item, OutputFunctionCall):
                # The client answers it with a function_call_output naming call_id.
                answer.append(FunctionCallItem(type="function_call", call_id=item.call_id, name=item.name, arguments=item.arguments))
        return [*self.items, *answer]


class ResponseStore(Protocol):
    async def put(self, stored: StoredResponse) -> None:
        """Keep the record durably (it is on disk when this returns)."""

    async def get(self, response_id: str) -> StoredResponse:
        """The record, or NotFound naming ``response_id``."""

    async def delete(self, response_id: str) -> None:
        """Forget the record, or NotFound naming ``response_id``."""


class MemoryResponseStore:
    """``ResponseStore`` over the memory service's PutResponse / GetResponse / DeleteResponse."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def _call(self, method: str, request: Message) -> Message:
        return await self._upstream.unary(memory_pb2_grpc.MemoryServiceStub, method, request)

    async def put(self, stored: StoredResponse) -> None:
        response = stored.response
        request = memory_pb2.PutResponseRequest(
            response_id=response.id,
            previous_response_id=response.previous_response_id or "",
            body_json=stored.to_json().decode(),
        )
        await self._call("PutResponse", request)

    async def get(self, response_id: str) -> StoredResponse:
        reply = await self._call("GetResponse", memory_pb2.GetResponseRequest(response_id=response_id))
        return StoredResponse.from_json(reply.body_json.encode())

    async def delete(self, response_id: str) -> None:
        await self._call("DeleteResponse", memory_pb2.DeleteResponseRequest(response_id=response_id))
