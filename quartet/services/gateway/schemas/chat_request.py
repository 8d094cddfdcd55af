"""The body of ``POST /v1/chat/completions``, validated strictly.

Every OpenAI parameter is declared, so an unknown key is an error (as OpenAI
itself answers) and a known one we cannot honour yet is refused by name
instead of being dropped: ``_UNSUPPORTED`` lists which values are accepted
today. vLLM's sampling extensions (``top_k``, ``min_p``, ...) are accepted
too, since the engine implements them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from quartet.services.common.sampling import MAX_TOP_LOGPROBS
from quartet.services.gateway.schemas.sampling import TextSampling
from quartet.services.gateway.schemas.strict import UINT32_MAX, check_stream_options
from quartet.services.gateway.schemas.strict import Strict as _Strict
from quartet.services.gateway.schemas.strict import absent as _absent
from quartet.services.gateway.schemas.strict import invalid as _invalid
from quartet.services.gateway.schemas.strict import unsupported as _unsupported
from quartet.services.gateway.schemas.tools import ChatNamedToolChoice, ChatTool, ChatToolChoice, FunctionSpec


class ContentPart(_Strict):
    """One part of a message's content; only text parts are supported so far."""

    type: str
    text: str | None = Field(default=None, validate_default=True)
    # Declared so that a client sending them learns the part is unsupported, not "unknown".
    image_url: Any = None
    input_audio: Any = None
    file: Any = None
    refusal: Any = None

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        if value != "text":
            raise _unsupported(f"content parts of type '{value}' are not supported; send parts of type 'text'")
        return value

    @field_validator("text")
    @classmethod
    def _has_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("type") == "text":
            raise _invalid("a text part needs a 'text' string")
        return value


class FunctionCallParam(_Strict):
    name: str
    arguments: str


class ToolCallParam(_Strict):
    """A tool call an assistant made earlier in the conversation."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallParam


Role = Literal["system", "developer", "user", "assistant", "tool"]


class ChatMessage(_Strict):
    """One message. Fields are validated in declaration order, so checks on
    ``content`` can see ``role`` and ``tool_calls``."""

    role: Role
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = Field(default=None, validate_default=True)
    content: str | list[ContentPart] | None = Field(default=None, validate_default=True)
    # Present when a client echoes back an assistant message it received.
    refusal: str | None = None
    annotations: list[Any] | None = None
    audio: Any = None
    function_call: Any = None
    reasoning_content: str | None = None

    @field_validator("tool_call_id")
    @classmethod
    def _tool_needs_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("role") == "tool" and not value:
            raise _invalid("a tool message needs the 'tool_call_id' of the call it answers")
        return value

    @field_validator("content")
    @classmethod
    def _content_present(cls, value: str | list[ContentPart] | None, info: ValidationInfo) -> Any:
        if value is None and not (info.data.get("role") == "assistant" and info.data.get("tool_calls")):
            raise _invalid(f"messages with role '{info.data.get('role')}' need 'content' (a string or a list of text parts)")
        return value

    @field_validator("audio", "function_call")
    @classmethod
    def _not_echoed_features(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise _unsupported(f"'{info.field_name}' in messages is not supported")
        return value

    def text(self) -> str:
        """The content as one string; text parts are joined by newlines, as vLLM does."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content)


class StreamOptions(_Strict):
    #: Send a last chunk with empty choices and the request's usage.
    include_usage: bool | None = None
    #: OpenAI pads chunks against length side channels; we do not, so the flag has no effect.
    include_obfuscation: bool | None = None


class JsonSchemaFormat(_Strict):
    """``response_format.json_schema``: the schema the answer must fit, enforced by the engine."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    """Plain text, any JSON object, or JSON fitting a schema; the engine's constraints enforce the JSON
    forms (an engine without constraints refuses them, and the client gets a 400 naming response_format)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = Field(default=None, validate_default=True)

    @field_validator("json_schema")
    @classmethod
    def _schema_when_asked(cls, value: JsonSchemaFormat | None, info: ValidationInfo) -> JsonSchemaFormat | None:
        if info.data.get("type") == "json_schema" and value is None:
            raise _invalid("a json_schema response_format needs 'json_schema' with 'name' and 'schema'")
        return value


# Known OpenAI parameters we do not implement yet: which values are still accepted,
# and why anything else is refused. Remove a line when the feature lands.
_UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "functions": (_absent, "functions are not supported yet"),
    "function_call": (lambda v: v in (None, "none"), "function_call is not supported yet"),
    "audio": (_absent, "audio output is not supported"),
    "modalities": (lambda v: v in (None, ["text"]), "only the 'text' modality is supported"),
    "prediction": (_absent, "predicted outputs are not supported"),
    "web_search_options": (_absent, "web search is not supported"),
    "reasoning_effort": (_absent, "reasoning_effort is not supported by the served models"),
    "verbosity": (_absent, "verbosity is not supported"),
    "service_tier": (lambda v: v in (None, "auto", "default"), "only the 'auto' and 'default' service tiers exist here"),
    "store": (lambda v: v in (None, False), "stored completions are not supported"),
    "moderation": (_absent, "moderation is not supported"),
    "prompt_cache_options": (_absent, "prompt_cache_options is not supported"),
}


class ChatCompletionRequest(TextSampling):
    """The OpenAI Chat Completions request (fields in validation order)."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    max_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[ChatTool] | None = None
    tool_choice: ChatToolChoice | None = None
    #: Accepted; the engine parses one call per reply, so a reply holds at most one (quartet/services/gateway/tool_plan.py).
    parallel_tool_calls: bool | None = None
    # Identifiers and hints that change nothing about the output.
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    metadata: dict[str, str] | None = None
    # Known, not implemented yet: see _UNSUPPORTED.
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    service_tier: Any = None
    store: Any = None
    moderation: Any = None
    prompt_cache_options: Any = None

    @field_validator(*_UNSUPPORTED)
    @classmethod
    def _refuse_unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        accepts, reason = _UNSUPPORTED[info.field_name]
        if not accepts(value):
            raise _unsupported(f"{reason}; remove '{info.field_name}' from the request")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        return check_stream_options(value, bool(info.data.get("stream")))

    @field_validator("max_completion_tokens")
    @classmethod
    def _one_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        other = info.data.get("max_tokens")
        if value is not None and other is not None and other != value:
            raise _invalid("max_tokens and max_completion_tokens disagree; send only max_completion_tokens")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise _invalid("top_logprobs needs logprobs set to true")
        return value

    @property
    def completion_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def function_specs(self) -> list[FunctionSpec]:
        return [
            FunctionSpec(name=tool.function.name, description=tool.function.description or "", parameters=tool.function.parameters)
            for tool in self.tools or []
            if tool.function is not None
        ]

    @property
    def tool_choice_name(self) -> str | None:
        """``tool_choice`` as tool_plan.plan_tools reads it: a mode, or the named function."""
        choice = self.tool_choice
        return choice.function.name if isinstance(choice, ChatNamedToolChoice) else choice
