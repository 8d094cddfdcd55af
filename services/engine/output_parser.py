"""Turn one choice's generated output into typed deltas: content, reasoning, tool calls.

Each sequence gets its own parser (the engine loop feeds it every token with the
text the sequence released for it). Three kinds:

* ``ContentParser``: everything is content (no tools offered).
* ``JsonToolCallParser``: for chat-template models offered tools. A reply that is
  one JSON object ``{"name": <tool>, "arguments": {...}}`` (the format the tool
  prompt asks for, see ``tool_prompt.py``; ``"parameters"`` is read as a synonym,
  as Llama 3.1 writes it) becomes a tool call; anything else is content. The
  reply is held back only while it could still be such an object: once the name
  is known the call's first delta goes out, then the arguments stream as they
  arrive, minus the envelope's closing brace.
* ``harmony.HarmonyOutputParser``: gpt-oss channels, from the token ids.

``typed_chunks`` is the one place the engine loop turns a parser's deltas into
``Chunk`` events, and where a finished tool call turns finish_reason STOP into
TOOL_CALLS.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from services.engine.events import Chunk, DeltaKind, FinishReason, PositionLogprobs, ToolCallDelta, Usage


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


class JsonToolCallParser(OutputParser):
    """A bare JSON tool call, streamed (see the module docstring); one call per reply."""

    def __init__(self, tool_names: Sequence[str]) -> None:
        self._tool_names = frozenset(tool_names)
        self._state = "undecided"  # -> "content" | "arguments" | "after_arguments"
        self._buffer = ""
        self._scanner = _JsonValueScanner()

    def push(self, token_id: int, text: str) -> list[Delta]:
        return self._feed(text)

    def finish(self) -> list[Delta]:
        if self._state == "undecided" and self._buffer:
            self._state = "content"
            return [Delta(DeltaKind.CONTENT, self._buffer)]
        return []

    def _feed(self, text: str) -> list[Delta]:
        if not text:
            return []
        if self._state == "content":
            return [Delta(DeltaKind.CONTENT, text)]
        if self._state == "arguments":
            return self._arguments(text)
        if self._state == "after_arguments":
            return []  # the envelope's closing brace and trailing whitespace
        self._buffer += text
        header = match_call_header(self._buffer)
        if header is None:
            return []  # could still become a call
        if header is False:
            self._state = "content"
            return [Delta(DeltaKind.CONTENT, self._buffer)]
        name, end = header
        if name not in self._tool_names:
            self._state = "content"
            return [Delta(DeltaKind.CONTENT, self._buffer)]
        self._state = "arguments"
        self.num_tool_calls = 1
        rest, self._buffer = self._buffer[end:], ""
        first = Delta(DeltaKind.TOOL_CALL, tool_call=ToolCallDelta(0, id=new_call_id(), name=name))
        return [first, *self._arguments(rest)]

    def _arguments(self, text: str) -> list[Delta]:
        if not self._scanner.started:
            text = text.lstrip(" \t\r\n")
        taken = self._scanner.feed(text)
        if self._scanner.is_complete:
            self._state = "after_arguments"
        piece = text[:taken]
        if not piece:
            return []
        return [Delta(DeltaKind.TOOL_CALL, tool_call=ToolCallDelta(0, arguments=piece))]


TOOL_CALL_TAG = "<tool_call>"


def match_call_header(text: str) -> tuple[str, int] | bool | None:
    """Match ``{"name": "<tool>", "arguments": `` at the start of ``text``.

    Whitespace and a leading ``<tool_call>`` tag are allowed.

    Returns (name, end offset) on a full match, None while ``text`` is a prefix of
    one, False once it cannot be one.
    """
    i = _skip_ws(text, 0)
    if text.startswith("<", i):  # Hermes/Qwen templates wrap the object in <tool_call>...</tool_call>
        i, ok = _expect(text, i, TOOL_CALL_TAG)
        if ok is not True:
            return ok
        i = _skip_ws(text, i)
    for expected in ("{", '"name"', ":"):
        i, ok = _expect(text, i, expected)
        if ok is not True:
            return ok
        i = _skip_ws(text, i)
    if i == len(text):
        return None
    if text[i] != '"':
        return False
    name_end = _string_end(text, i)
    if name_end is None:
        return None
    try:
        name = json.loads(text[i:name_end])
    except json.JSONDecodeError:
        return False
    i = _skip_ws(text, name_end)
    i, ok = _expect(text, i, ",")
    if ok is not True:
        return ok
    i = _skip_ws(text, i)
    for key in ('"arguments"', '"parameters"'):
        j, ok = _expect(text, i, key)
        if ok is True:
            j = _skip_ws(text, j)
            j, ok = _expect(text, j, ":")
            if ok is not True:
                return ok
            return name, _skip_ws(text, j)
        if ok is None:
            return None
    return False


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _expect(text: str, i: int, literal: str) -> tuple[int, bool | None]:
    """(offset after ``literal``, True) on a match; None if ``text`` ends inside it; False on a mismatch."""
    piece = text[i : i + len(literal)]
    if piece == literal:
        return i + len(literal), True
    return i, None if literal.startswith(piece) and len(piece) < len(literal) else False


def _string_end(text: str, start: int) -> int | None:
    """Offset just past the JSON string starting at ``start`` (a quote), or None if it is not closed yet."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return None


class _JsonValueScanner:
    """Finds where one JSON value ends in streamed text, tracking strings and nesting."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = False
        self.in_string = False
        self.escaped = False
        self.is_complete = False

    def feed(self, text: str) -> int:
        """How many leading characters of ``text`` belong to the value."""
        for i, char in enumerate(text):
            if self.is_complete:
                return i
            if not self.started:
                if char in " \t\r\n":
                    continue
                self.started = True
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
                    self.is_complete = self.depth == 0
                continue
            if char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
                if self.depth <= 0:
                    self.is_complete = True
                    return i + 1
            elif self.depth == 0 and char in ",}":
                self.is_complete = True
                return i
        return len(text)


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
