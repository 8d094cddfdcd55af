"""One Responses API answer: engine events in, the documented event sequence (or one response) out.

The sequence for a plain answer is ``response.created``, ``response.in_progress``,
then per output item ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` ..., ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, and last
``response.completed`` (``response.incomplete`` when max_output_tokens cut it).
Reasoning text (gpt-oss's analysis channel) becomes a ``reasoning`` item before
the message, with ``response.reasoning_text.*`` events. A tool call becomes a
``function_call`` item: ``response.output_item.added`` (empty arguments),
``response.function_call_arguments.delta`` ..., ``response.function_call_arguments.done``,
``response.output_item.done``; it has no content parts. Non-streaming answers
run the same builder and keep only the final response.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel
from quartet.engine.v1 import engine_pb2

from quartet.services.common.errors import QuartetError
from quartet.services.gateway import convert
from quartet.services.gateway.errors import Internal
from quartet.services.gateway.schemas.chat_response import TokenLogprob
from quartet.services.gateway.schemas.responses_events import (
    ContentPartEvent,
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    OutputItemEvent,
    OutputTextDelta,
    OutputTextDone,
    ReasoningTextDelta,
    ReasoningTextDone,
    ResponseLifecycleEvent,
)
from quartet.services.gateway.schemas.responses_object import (
    IncompleteDetails,
    ItemStatus,
    OutputFunctionCall,
    OutputItem,
    OutputLogprob,
    OutputMessage,
    OutputReasoning,
    OutputText,
    OutputTopLogprob,
    ReasoningText,
    Response,
    ResponseError,
    ResponseUsage,
)


@dataclass(slots=True)
class _Item:
    kind: str  # "message", "reasoning" or "function_call"
    id: str
    output_index: int
    text: list[str] = field(default_factory=list)  # a function call's arguments
    logprobs: list[OutputLogprob] = field(default_factory=list)
    status: ItemStatus = "in_progress"
    call_id: str = ""
    name: str = ""

    def part(self) -> OutputText | ReasoningText:
        if self.kind == "message":
            return OutputText(text="".join(self.text), logprobs=self.logprobs)
        return ReasoningText(text="".join(self.text))

    def item(self, *, with_content: bool = True) -> OutputItem:
        # OpenAI announces an item with no content yet; its part follows in content_part.added.
        if self.kind == "function_call":
            arguments = "".join(self.text) if with_content else ""
            return OutputFunctionCall(id=self.id, call_id=self.call_id, name=self.name, arguments=arguments, status=self.status)
        content = [self.part()] if with_content else []
        if self.kind == "message":
            return OutputMessage(id=self.id, status=self.status, content=content)
        return OutputReasoning(id=self.id, status=self.status, content=content)


class ResponseBuilder:
    """Feeds on one engine stream (n = 1) and builds ``response`` the events describe."""

    def __init__(self, response: Response, *, wants_logprobs: bool) -> None:
        self.response = response
        self._wants_logprobs = wants_logprobs
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._sequence = 0
        self._finish: engine_pb2.Complete | None = None
        self._reasoning_tokens = 0

    def _seq(self) -> int:
        self._sequence += 1
        return self._sequence - 1

    def _lifecycle(self, kind: str) -> ResponseLifecycleEvent:
        self.response.output = [item.item() for item in self._items]
        return ResponseLifecycleEvent(type=kind, sequence_number=self._seq(), response=self.response.model_copy(deep=True))

    def start(self) -> list[BaseModel]:
        return [self._lifecycle("response.created"), self._lifecycle("response.in_progress")]

    def _open_item(self, kind: str, out: list[BaseModel]) -> _Item:
        if self._open is not None and self._open.kind == kind:
            return self._open
        self._close(out, "completed")
        prefix = "msg" if kind == "message" else "rs"
        item = _Item(kind=kind, id=f"{prefix}_{uuid.uuid4().hex}", output_index=len(self._items))
        self._items.append(item)
        self._open = item
        added = item.item(with_content=False)
        out.append(OutputItemEvent(type="response.output_item.added", sequence_number=self._seq(), output_index=item.output_index, item=added))
        out.append(self._part_event("response.content_part.added", item))
        return item

    def _open_call(self, call: engine_pb2.ToolCallDelta, out: list[BaseModel]) -> _Item:
        self._close(out, "completed")
        call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
        item = _Item(kind="function_call", id=f"fc_{uuid.uuid4().hex}", output_index=len(self._items), call_id=call_id, name=call.name)
        self._items.append(item)
        self._open = item
        added = item.item(with_content=False)
        out.append(OutputItemEvent(type="response.output_item.added", sequence_number=self._seq(), output_index=item.output_index, item=added))
        return item

    def _part_event(self, kind: str, item: _Item) -> ContentPartEvent:
        return ContentPartEvent(
            type=kind, sequence_number=self._seq(), item_id=item.id, output_index=item.output_index, content_index=0, part=item.part()
        )

    def _close(self, out: list[BaseModel], status: ItemStatus) -> None:
        item, self._open = self._open, None
        if item is None:
            return
        item.status = status
        where = {"item_id": item.id, "output_index": item.output_index, "content_index": 0}
        text = "".join(item.text)
        if item.kind == "function_call":
            out.append(
                FunctionCallArgumentsDone(
                    sequence_number=self._seq(), item_id=item.id, output_index=item.output_index, name=item.name, arguments=text
                )
            )
            out.append(OutputItemEvent(type="response.output_item.done", sequence_number=self._seq(), output_index=item.output_index, item=item.item()))
            return
        if item.kind == "message":
            out.append(OutputTextDone(sequence_number=self._seq(), text=text, logprobs=item.logprobs, **where))
        else:
            out.append(ReasoningTextDone(sequence_number=self._seq(), text=text, **where))
        out.append(self._part_event("response.content_part.done", item))
        out.append(OutputItemEvent(type="response.output_item.done", sequence_number=self._seq(), output_index=item.output_index, item=item.item()))

    def apply(self, event: engine_pb2.GenerateResponse) -> list[BaseModel]:
        """Record one engine event; return the events to stream for it."""
        out: list[BaseModel] = []
        kind = event.WhichOneof("event")
        if kind == "complete":
            self._finish = event.complete
            return out
        if kind != "chunk":
            return out
        chunk = event.chunk
        if chunk.kind == engine_pb2.DELTA_KIND_TOOL_CALL:
            return self._apply_call(chunk.tool_call)
        if chunk.kind == engine_pb2.DELTA_KIND_REASONING:
            self._reasoning_tokens += len(chunk.token_ids)
            if not chunk.text:
                return out
            item = self._open_item("reasoning", out)
            item.text.append(chunk.text)
            where = {"item_id": item.id, "output_index": item.output_index, "content_index": 0}
            out.append(ReasoningTextDelta(sequence_number=self._seq(), delta=chunk.text, **where))
            return out
        logprobs = [_logprob(p) for p in convert.logprobs(list(chunk.logprobs))] if self._wants_logprobs else []
        if not chunk.text and not logprobs:
            return out  # held back: a possible stop string
        item = self._open_item("message", out)
        item.text.append(chunk.text)
        item.logprobs.extend(logprobs)
        where = {"item_id": item.id, "output_index": item.output_index, "content_index": 0}
        out.append(OutputTextDelta(sequence_number=self._seq(), delta=chunk.text, logprobs=logprobs, **where))
        return out

    def _apply_call(self, call: engine_pb2.ToolCallDelta) -> list[BaseModel]:
        out: list[BaseModel] = []
        item = self._open
        # A call's first delta carries its id and name; later ones only arguments.
        if call.id or call.name or item is None or item.kind != "function_call":
            item = self._open_call(call, out)
        if call.arguments:
            item.text.append(call.arguments)
            out.append(
                FunctionCallArgumentsDelta(sequence_number=self._seq(), item_id=item.id, output_index=item.output_index, delta=call.arguments)
            )
        return out

    def finish(self) -> list[BaseModel]:
        """Close the answer after the engine's last event; the last event is the finished response."""
        if self._finish is None:
            raise Internal("the engine ended the stream before the answer was complete; see the engine log")
        reason = convert.finish_reason(self._finish)  # raises for an aborted or failed request
        out: list[BaseModel] = []
        if not any(item.kind in ("message", "function_call") for item in self._items):
            self._open_item("message", out)  # an answer always has its message or call, even an empty message
        incomplete = reason == "length"
        self._close(out, "incomplete" if incomplete else "completed")
        usage = self._finish.usage
        self.response.usage = ResponseUsage(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )
        self.response.usage.output_tokens_details.reasoning_tokens = self._reasoning_tokens
        self.response.completed_at = int(time.time())
        self.response.warnings = convert.warnings(self._finish)
        if incomplete:
            self.response.status = "incomplete"
            self.response.incomplete_details = IncompleteDetails(reason="max_output_tokens")
            out.append(self._lifecycle("response.incomplete"))
        else:
            self.response.status = "completed"
            out.append(self._lifecycle("response.completed"))
        return out

    def fail(self, error: QuartetError) -> list[BaseModel]:
        """The events that end a stream that failed: ``error``, then ``response.failed``."""
        code = getattr(error, "code", None) or "server_error"
        self.response.status = "failed"
        self.response.error = ResponseError(code=code, message=error.message)
        return [
            ErrorEvent(sequence_number=self._seq(), code=code, message=error.message, param=error.field),
            self._lifecycle("response.failed"),
        ]


def _logprob(entry: TokenLogprob) -> OutputLogprob:
    return OutputLogprob(
        token=entry.token,
        bytes=entry.bytes or [],
        logprob=entry.logprob,
        top_logprobs=[OutputTopLogprob(token=t.token, bytes=t.bytes or [], logprob=t.logprob) for t in entry.top_logprobs],
    )
