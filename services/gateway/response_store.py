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

from pydantic import TypeAdapter

from services.gateway.schemas.responses_object import OutputMessage, Response
from services.gateway.schemas.responses_request import InputItem, MessageItem, TextPart

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
        answer = [
            MessageItem(role="assistant", content=[TextPart(type="output_text", text=part.text) for part in item.content])
            for item in self.response.output
            if isinstance(item, OutputMessage)
        ]
        return [*self.items, *answer]


class ResponseStore(Protocol):
    async def put(self, stored: StoredResponse) -> None:
        """Keep the record durably (it is on disk when this returns)."""

    async def get(self, response_id: str) -> StoredResponse:
        """The record, or NotFound naming ``response_id``."""

    async def delete(self, response_id: str) -> None:
        """Forget the record, or NotFound naming ``response_id``."""
