"""Stream JSON tool calls out of a chat-template model's reply (the format ``tool_prompt.py`` asks for).

A reply is a tool-call reply when it starts (after whitespace) with one of:

* one call object ``{"name": <tool>, "arguments": {...}}`` (``"parameters"`` is read as a
  synonym, as Llama 3.1 writes it);
* a JSON array of such objects ``[{...}, {...}]``, the form the tool prompt asks for when
  several calls are allowed (SmolLM2 and the APIGen-style data small models learn tools
  from write calls this way), and the one a json_schema constraint can force;
* either of those inside ``<tool_call>`` ... ``</tool_call>`` (Hermes/Qwen templates), where
  several tagged objects in a row are several calls.

Text that comes first stays content; a ``<tool_call>`` tag after it still starts calls,
but a bare JSON object after text does not (an answer may quote JSON). Anything else is
content, released as soon as it cannot be a call any more.

Each call streams as soon as its name is known: a first delta with a fresh id and the name,
then the arguments text as it arrives, minus the envelope around it, with
``ToolCallDelta.index`` 0, 1, ... When several calls are not allowed only the first is
parsed. After a call, what is neither the next call nor the envelope's punctuation (a
malformed or unknown second call, trailing text) ends the reply's calls and is dropped,
as a single call's trailing text always was: the calls already streamed stand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from quartet.services.engine.api.events import DeltaKind, ToolCallDelta
from quartet.services.engine.text.output_parser import Delta, OutputParser, new_call_id

TOOL_CALL_TAG = "<tool_call>"
TOOL_CALL_END_TAG = "</tool_call>"

#: (tool name, offset after the header); None: could still become one; False: cannot.
Match = tuple[str, int] | bool | None


class JsonToolCallParser(OutputParser):
    """Streams the calls of one reply; ``parallel`` allows more than one."""

    def __init__(self, tool_names: Sequence[str], *, parallel: bool = False) -> None:
        self._tool_names = frozenset(tool_names)
        self._is_parallel = parallel
        # undecided -> content | arguments -> envelope -> between -> arguments ... | done
        self._state = "undecided"
        self._buffer = ""
        self._is_array = False
        self._is_tagged = False
        self._scanner = _JsonValueScanner()
        self._tail = _JsonValueScanner(inside_object=True)
        self._handlers: dict[str, Callable[[str, list[Delta]], str]] = {
            "undecided": self._undecided,
            "content": self._content,
            "arguments": self._arguments,
            "envelope": self._envelope,
            "between": self._between,
            "done": lambda text, out: "",
        }

    def push(self, token_id: int, text: str) -> list[Delta]:
        out: list[Delta] = []
        while text:  # each handler consumes a prefix and hands the rest to the next state
            text = self._handlers[self._state](text, out)
        return out

    def finish(self) -> list[Delta]:
        held, self._buffer = self._buffer, ""
        if self._state in ("undecided", "content") and held:
            self._state = "content"
            return [Delta(DeltaKind.CONTENT, held)]
        return []

    # --- states ---------------------------------------------------------------

    def _undecided(self, text: str, out: list[Delta]) -> str:
        self._buffer += text
        start = match_reply_start(self._buffer)
        if start is None:
            return ""  # could still become a call
        if start is False or start[0] not in self._tool_names:
            return self._to_content(out)
        name, end = start
        i = _skip_ws(self._buffer, 0)
        self._is_tagged = self._buffer.startswith(TOOL_CALL_TAG, i)
        if self._is_tagged:
            i = _skip_ws(self._buffer, i + len(TOOL_CALL_TAG))
        self._is_array = self._buffer.startswith("[", i)
        rest, self._buffer = self._buffer[end:], ""
        self._open_call(name, out)
        return rest

    def _to_content(self, out: list[Delta]) -> str:
        """The held text was not a call: it is content, read on for a later ``<tool_call>`` tag."""
        self._state = "content"
        held, self._buffer = self._buffer, ""
        start = _skip_ws(held, 0)
        if held.startswith(TOOL_CALL_TAG, start):  # this tag failed to open a call: it is text
            start += len(TOOL_CALL_TAG)
            out.append(Delta(DeltaKind.CONTENT, held[:start]))
            return held[start:]
        return held

    def _content(self, text: str, out: list[Delta]) -> str:
        self._buffer += text
        at = self._buffer.find(TOOL_CALL_TAG)
        if at >= 0:  # a tagged call after some text
            before, rest = self._buffer[:at], self._buffer[at:]
            self._buffer = ""
            if before:
                out.append(Delta(DeltaKind.CONTENT, before))
            self._state = "undecided"
            return rest
        keep = _partial_suffix(self._buffer, TOOL_CALL_TAG)  # hold back only what may start the tag
        release = self._buffer[: len(self._buffer) - keep]
        self._buffer = self._buffer[len(release) :]
        if release:
            out.append(Delta(DeltaKind.CONTENT, release))
        return ""

    def _open_call(self, name: str, out: list[Delta]) -> None:
        index = self.num_tool_calls
        self.num_tool_calls += 1
        self._state = "arguments"
        self._scanner = _JsonValueScanner()
        out.append(Delta(DeltaKind.TOOL_CALL, tool_call=ToolCallDelta(index, id=new_call_id(), name=name)))

    def _arguments(self, text: str, out: list[Delta]) -> str:
        if not self._scanner.started:
            text = text.lstrip(" \t\r\n")
            if not text:
                return ""
        taken = self._scanner.feed(text)
        if self._scanner.is_complete:
            self._state = "envelope"
            self._tail = _JsonValueScanner(inside_object=True)
        piece = text[:taken]
        if piece:
            index = self.num_tool_calls - 1
            out.append(Delta(DeltaKind.TOOL_CALL, tool_call=ToolCallDelta(index, arguments=piece)))
        return text[taken:]

    def _envelope(self, text: str, out: list[Delta]) -> str:
        """The rest of the call object up to its closing brace (normally just the brace)."""
        taken = self._tail.feed(text)
        if not self._tail.is_complete:
            return ""
        self._state = "between" if self._is_parallel else "done"
        return text[taken:]

    def _between(self, text: str, out: list[Delta]) -> str:
        self._buffer += text
        found = match_next_call(self._buffer, is_array=self._is_array, is_tagged=self._is_tagged)
        if found is None:
            return ""
        if found is False or found[0] not in self._tool_names:
            self._state, self._buffer = "done", ""
            return ""
        name, end = found
        rest, self._buffer = self._buffer[end:], ""
        self._open_call(name, out)
        return rest


def match_call_header(text: str) -> Match:
    """Match ``{"name": "<tool>", "arguments": `` at the start of ``text`` (whitespace and a
    leading ``<tool_call>`` tag allowed): (name, end offset), None while ``text`` is a prefix
    of one, False once it cannot be one."""
    i = _skip_ws(text, 0)
    if text.startswith("<", i):  # Hermes/Qwen templates wrap the object in <tool_call>...</tool_call>
        i, ok = _expect(text, i, TOOL_CALL_TAG)
        if ok is not True:
            return ok
    return _object_header(text, _skip_ws(text, i))


def match_reply_start(text: str) -> Match:
    """Like ``match_call_header``, also through the ``[`` that opens an array of calls."""
    i = _skip_ws(text, 0)
    if text.startswith("<", i):
        i, ok = _expect(text, i, TOOL_CALL_TAG)
        if ok is not True:
            return ok
        i = _skip_ws(text, i)
    if text.startswith("[", i):
        i = _skip_ws(text, i + 1)
    return _object_header(text, i)


def match_next_call(text: str, *, is_array: bool, is_tagged: bool) -> Match:
    """After a call's closing brace: the header of the next call, in the form the first one took."""
    i = _skip_ws(text, 0)
    if is_array:
        i, ok = _expect(text, i, ",")  # "]" or anything else ends the calls
        if ok is not True:
            return ok
        return _object_header(text, _skip_ws(text, i))
    if is_tagged:  # <tool_call>{...}</tool_call> <tool_call>{...}</tool_call>
        for tag in (TOOL_CALL_END_TAG, TOOL_CALL_TAG):
            if text.startswith("<", i) or i == len(text):
                j, ok = _expect(text, i, tag)
                if ok is None:
                    return None
                if ok:
                    i = _skip_ws(text, j)
    return _object_header(text, i)


def _object_header(text: str, i: int) -> Match:
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


def _partial_suffix(text: str, literal: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``literal``."""
    for size in range(min(len(text), len(literal) - 1), 0, -1):
        if literal.startswith(text[-size:]):
            return size
    return 0


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
    """Finds where one JSON value ends in streamed text, tracking strings and nesting.

    ``inside_object``: start one level deep, so the scan ends just past the ``}`` that closes
    the enclosing object (the rest of a call envelope after its arguments).
    """

    def __init__(self, *, inside_object: bool = False) -> None:
        self.depth = 1 if inside_object else 0
        self.started = inside_object
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
            elif self.depth == 0 and char in ",}]":  # ends a bare number or literal
                self.is_complete = True
                return i
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.is_complete = True
                    return i + 1
        return len(text)
