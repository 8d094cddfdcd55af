"""The body of ``POST /v1/completions`` (the legacy text completions API), validated strictly.

``prompt`` is one string, a list of strings, one list of token ids or a list
of them; each prompt is its own engine request, run side by side, and its
``n`` choices take the indices ``prompt_index * n + j`` (OpenAI's order).
``logprobs`` is the legacy integer form: how many alternatives to return per
token, the chosen one always included. ``response_format`` (chat's, accepted here as
vLLM does) constrains every choice to JSON or a JSON Schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from quartet.services.common.sampling import MAX_TOP_LOGPROBS
from quartet.services.gateway.schemas.chat_request import ResponseFormat, StreamOptions
from quartet.services.gateway.schemas.sampling import TextSampling
from quartet.services.gateway.schemas.strict import (
    UINT32_MAX,
    check_stream_options,
    check_token_ids,
    invalid,
    unsupported,
)

#: OpenAI's default for this API (chat has none).
DEFAULT_MAX_TOKENS = 16
#: Most choices one request may ask for, prompts times n (chat's n has the same bound).
MAX_CHOICES = 128

Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(TextSampling):
    """The OpenAI Completions request (fields in validation order)."""

    model: str = Field(min_length=1)
    prompt: Prompt
    stream: bool = False
    stream_options: StreamOptions | None = None
    echo: bool | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    best_of: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    max_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    suffix: str | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts_usable(cls, value: Prompt) -> Prompt:
        if value == "" or value == [] or (isinstance(value, list) and any(p == "" or p == [] for p in value)):
            raise invalid("prompts must not be empty")
        for prompt in _as_list(value):
            if isinstance(prompt, list):
                check_token_ids(prompt, "token prompts")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        return check_stream_options(value, bool(info.data.get("stream")))

    @field_validator("echo")
    @classmethod
    def _echo_of_text(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        prompts = _as_list(info.data.get("prompt", []))
        if value and any(isinstance(prompt, list) for prompt in prompts):
            raise unsupported("echo needs text prompts: the gateway does not detokenize token-id prompts")
        return value

    @field_validator("n")
    @classmethod
    def _choices_bounded(cls, value: int | None, info: ValidationInfo) -> int | None:
        num_prompts = len(_as_list(info.data.get("prompt", [])))
        if num_prompts * (value or 1) > MAX_CHOICES:
            raise invalid(f"{num_prompts} prompts times n={value or 1} choices pass the limit of {MAX_CHOICES} choices")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_is_n(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value != (info.data.get("n") or 1):
            raise unsupported("best_of other than n is not supported (choices are not ranked); leave it out")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_prompt_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("echo"):
            raise unsupported("logprobs with echo needs prompt logprobs, which the engine does not compute")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise unsupported("suffix (insertion) is not supported by the served models; remove 'suffix'")
        return value

    @property
    def prompts(self) -> list[str | list[int]]:
        """Each prompt of the request: a string or a list of token ids."""
        return _as_list(self.prompt)

    @property
    def completion_limit(self) -> int | None:
        return self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def num_choices(self) -> int:
        return self.n or 1


def _as_list(prompt: Any) -> list[Any]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(token, int) for token in prompt):
        return [prompt]
    return list(prompt) if isinstance(prompt, list) else []
