"""Stream gpt-oss output (Harmony) into typed deltas, token by token, with openai-harmony's parser.

The assistant's reply is a series of messages, each ``<|start|>assistant`` (the
first one's is in the prompt), a header (channel, optional ``to=`` recipient,
optional content type) and ``<|message|>`` content ended by ``<|end|>``,
``<|call|>`` or ``<|return|>``. openai-harmony's ``StreamableParser`` tracks that
state; this class classifies each content piece:

* channel ``analysis`` without a recipient: reasoning;
* any message with a recipient (``to=functions.get_weather``): a tool call whose
  name is the recipient without the ``functions.`` namespace; its content is the
  arguments. A call's first delta carries a fresh id and the name;
* anything else (``final``, and ``commentary`` preambles meant for the user): content.

A call ends the assistant's turn (``<|call|>`` is a stop token), so a reply holds at most one
call, index 0, whatever ``ChatInput.parallel_tool_calls`` says: that is Harmony's own rule, and
the caller runs the tool and asks again for the next.

If the model breaks the format (the strict parser raises), the rest of the
output is passed through as content rather than lost; so is output that never
formed a message header at all (seen when the sequence ends).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from quartet.services.engine.api.events import DeltaKind, ToolCallDelta
from quartet.services.engine.text.output_parser import Delta, OutputParser, new_call_id

log = logging.getLogger(__name__)

FUNCTIONS_PREFIX = "functions."


class HarmonyOutputParser(OutputParser):
    def __init__(self, encoding, prefill_ids: Sequence[int] = ()) -> None:
        from openai_harmony import Role, StreamableParser

        self._encoding = encoding
        self._parser = StreamableParser(encoding, Role.ASSISTANT)
        self._channel: str | None = None
        self._call_index = -1
        self._is_broken = False
        self._has_content = False
        self._unparsed: list[int] = []  # generated tokens before any message reached its content
        self._pending: list[Delta] = []
        for token_id in prefill_ids:  # the prompt opened the message: replay its header
            self._pending += self._step(token_id)  # (a forced call's name goes out with the first token)
        self._unparsed.clear()

    def push(self, token_id: int, text: str) -> list[Delta]:
        deltas, self._pending = self._pending, []
        if self._is_broken:
            return deltas + self._raw([token_id])
        try:
            return deltas + self._step(token_id)
        except Exception:  # noqa: BLE001 - openai-harmony raises its own error types for malformed output
            log.warning("gpt-oss output broke the Harmony format; passing the rest through as content")
            self._is_broken = True
            return deltas + self._raw([*self._unparsed, token_id])

    def finish(self) -> list[Delta]:
        """Output that never formed a Harmony message (no header at all) is plain content."""
        deltas, self._pending = self._pending, []
        if self._unparsed and not self._has_content and not self._is_broken:
            deltas += self._raw(self._unparsed)
        self._unparsed = []
        return deltas

    def _step(self, token_id: int) -> list[Delta]:
        parser = self._parser
        parser.process(token_id)
        channel = parser.current_channel
        if channel is not None:
            self._has_content = True
            self._unparsed = []
        elif not self._has_content:
            self._unparsed.append(token_id)
        deltas: list[Delta] = []
        recipient = parser.current_recipient
        if channel is not None and self._channel is None and recipient:  # a tool call's header just closed
            self._call_index += 1
            self.num_tool_calls += 1
            call = ToolCallDelta(self._call_index, id=new_call_id(), name=_tool_name(recipient))
            deltas.append(Delta(DeltaKind.TOOL_CALL, tool_call=call))
        self._channel = channel
        piece = parser.last_content_delta
        if not piece or channel is None:
            return deltas
        if recipient:
            deltas.append(Delta(DeltaKind.TOOL_CALL, tool_call=ToolCallDelta(self._call_index, arguments=piece)))
        elif channel == "analysis":
            deltas.append(Delta(DeltaKind.REASONING, piece))
        else:
            deltas.append(Delta(DeltaKind.CONTENT, piece))
        return deltas

    def _raw(self, token_ids: list[int]) -> list[Delta]:
        text = self._encoding.decode([t for t in token_ids if not self._encoding.is_special_token(t)])
        return [Delta(DeltaKind.CONTENT, text)] if text else []


def _tool_name(recipient: str) -> str:
    return recipient[len(FUNCTIONS_PREFIX) :] if recipient.startswith(FUNCTIONS_PREFIX) else recipient
