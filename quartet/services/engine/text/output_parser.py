"""Turn one choice's generated output into typed deltas: content, reasoning, tool calls.

Each sequence gets its own parser (the engine loop feeds it every token with the
text the sequence released for it). Three kinds:

* ``ContentParser``: everything is content (no tools offered).
* ``json_tool_calls.JsonToolCallParser``: for chat-template models offered tools: a
  reply that is a JSON call object, or an array of them (the format the tool prompt
  asks for, see ``tool_prompt.py``), becomes tool calls with indices 0, 1, ...;
  anything else is content.
* ``harmony.HarmonyOutputParser``: gpt-oss channels, from the token ids.

``typed_chunks`` is the one place the engine loop turns a parser's deltas into
``Chunk`` events, and where a finished tool call turns finish_reason STOP into
TOOL_CALLS.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from quartet.services.engine.api.events import Chunk, DeltaKind, FinishReason, PositionLogprobs, ToolCallDelta, Usage


@dataclass(frozen=True, slots=True)
class Delta:
    kind: DeltaKind
    text: str = ""
    tool_call: ToolCallDelta | None = None


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class OutputParser(ABC):
    """Per-sequence state; ``push`` per token, ``finish`` once when the sequence ends."""

    num_tool_calls: int = 0

    @abstractmethod
    def push(self, token_id: int, text: str) -> list[Delta]:
        """Deltas released by one token; ``text`` is what the sequence released for it."""

    def finish(self) -> list[Delta]:
        """Whatever was held back, now that no more tokens come."""
        return []


class ContentParser(OutputParser):
    def push(self, token_id: int, text: str) -> list[Delta]:
        return [Delta(DeltaKind.CONTENT, text)] if text else []


def typed_chunks(
    parser: OutputParser | None,
    *,
    index: int,
    token_id: int,
    text: str,
    usage: Usage,
    logprobs: tuple[PositionLogprobs, ...],
    is_finished: bool,
    finish_reason: FinishReason | None,
) -> tuple[list[Chunk], FinishReason | None]:
    """The chunks one token releases, and the finish reason to report if the sequence just ended.

    Always at least one chunk (it carries the token id and logprobs, even with no text);
    a tool call that was made turns a STOP into TOOL_CALLS.
    """
    if parser is None:
        return [Chunk(index, (token_id,), text, usage, logprobs)], finish_reason
    deltas = parser.push(token_id, text)
    if is_finished:
        deltas += parser.finish()
        if finish_reason is FinishReason.STOP and parser.num_tool_calls:
            finish_reason = FinishReason.TOOL_CALLS
    deltas = _merge(deltas)
    if not deltas:
        return [Chunk(index, (token_id,), "", usage, logprobs)], finish_reason
    chunks = []
    for i, delta in enumerate(deltas):
        ids, lps = ((token_id,), logprobs) if i == 0 else ((), ())
        chunks.append(Chunk(index, ids, delta.text, usage, lps, kind=delta.kind, tool_call=delta.tool_call))
    return chunks, finish_reason


def _merge(deltas: list[Delta]) -> list[Delta]:
    """Join neighbouring text deltas of one kind, so a token yields as few chunks as possible."""
    merged: list[Delta] = []
    for delta in deltas:
        last = merged[-1] if merged else None
        if last is not None and last.kind is delta.kind and last.tool_call is None and delta.tool_call is None:
            merged[-1] = Delta(last.kind, last.text + delta.text)
        elif (
            last is not None
            and last.tool_call is not None
            and delta.tool_call is not None
            and last.tool_call.index == delta.tool_call.index
            and not delta.tool_call.id
        ):
            t = last.tool_call
            merged[-1] = Delta(
                last.kind, "", ToolCallDelta(t.index, t.id, t.name, t.arguments + delta.tool_call.arguments)
            )
        else:
            merged.append(delta)
    return merged
