"""Completions responses: ``text_completion`` objects, whole or streamed.

A streamed chunk has the same shape as the whole answer (OpenAI uses one type
for both): each carries the new text of one choice, ``finish_reason`` set on
its last chunk only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from quartet.services.gateway.schemas.chat_response import Usage
from quartet.services.gateway.schemas.warnings import MayWarn

TextFinishReason = Literal["stop", "length", "content_filter"]


class LegacyLogprobs(BaseModel):
    """The legacy log-probability form: parallel lists, one entry per token."""

    tokens: list[str]
    token_logprobs: list[float | None]
    #: Per token: the requested number of alternatives, the chosen token always among them.
    top_logprobs: list[dict[str, float] | None]
    #: Character offset of each token in the choice's text (echoed prompt included).
    text_offset: list[int]


class CompletionChoice(MayWarn):
    index: int
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: TextFinishReason | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    #: On a whole answer always; in a stream only on the last chunk, when include_usage asked for it.
    usage: Usage | None = None
    system_fingerprint: str | None = None
