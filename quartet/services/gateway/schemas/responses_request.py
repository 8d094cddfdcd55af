"""The body of ``POST /v1/responses`` (OpenAI's Responses API), validated strictly.

``input`` is a string (one user message) or a list of items: messages (their
``type`` may be left out), earlier function calls and their outputs, and
reasoning items (accepted, not fed back: a reasoning model's earlier thoughts
are not part of its next prompt). Items and content parts of any other type
are refused by name, as are the known parameters ``_UNSUPPORTED`` lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, WithJsonSchema, field_validator

from quartet.services.common.sampling import MAX_TOP_LOGPROBS
from quartet.services.gateway.schemas.sampling import Sampling
from quartet.services.gateway.schemas.strict import (
    UINT32_MAX,
    Strict,
    absent,
    check_stream_options,
    invalid,
    unsupported,
)
from quartet.services.gateway.schemas.tools import FunctionSpec, ResponsesFunctionTool, ResponsesNamedToolChoice, ResponsesToolChoice

#: The one ``include`` value honoured: token log-probabilities on output text.
LOGPROBS_INCLUDE = "message.output_text.logprobs"


class _Unsupported(Strict):
    """Any item or part of a type not listed: refused with its type named."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: Any = None

    @field_validator("type")
    @classmethod
    def _refuse(cls, value: Any) -> Any:
        raise unsupported(f"items or parts of type '{value}' are not supported; send text messages and function calls")


#: In a union, the refused types: documented as matching nothing, since nothing of them is accepted.
Refused = Annotated[_Unsupported, WithJsonSchema({"not": {}, "description": "Any other type is refused (400)."})]


def _tag(known: tuple[str, ...], default: str | None) -> Callable[[Any], str | None]:
    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            kind = value.get("type", default)
        elif isinstance(value, BaseModel):
            kind = getattr(value, "type", default)
        else:
            return None
        return kind if kind in known else "unsupported"

    return tag


class TextPart(Strict):
    type: Literal["input_text", "output_text"]
    text: str
    # Sent back by clients that echo an earlier answer's parts.
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class RefusalPart(Strict):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    Annotated[TextPart, Tag("input_text")]
    | Annotated[TextPart, Tag("output_text")]
    | Annotated[RefusalPart, Tag("refusal")]
    | Annotated[Refused, Tag("unsupported")],
    Discriminator(_tag(("input_text", "output_text", "refusal"), None)),
]


class MessageItem(Strict):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None
    phase: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text if isinstance(part, TextPart) else part.refusal for part in self.content)


class FunctionCallItem(Strict):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(Strict):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[TextPart]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "\n".join(part.text for part in self.output)


class ReasoningItem(Strict):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[Any] = Field(default_factory=list)
    content: list[Any] | None = None
    encrypted_content: str | None = None
    status: str | None = None


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[Refused, Tag("unsupported")],
    Discriminator(_tag(("message", "function_call", "function_call_output", "reasoning"), "message")),
]


class TextFormat(Strict):
    """``text.format``: plain text, or JSON (any object, or fitting ``schema``) enforced by the engine."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", validate_default=True)
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _schema_for_json_schema(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if info.data.get("type") == "json_schema" and value is None:
            raise invalid("a json_schema format needs its 'schema'")
        return value


class TextConfig(Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(Strict):
    effort: Any = None
    summary: Any = None
    generate_summary: Any = None

    @field_validator("effort", "summary", "generate_summary")
    @classmethod
    def _not_yet(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise unsupported(f"reasoning.{info.field_name} is not supported by the served models")
        return value


class ResponsesStreamOptions(Strict):
    #: OpenAI pads events against length side channels; we do not, so the flag has no effect.
    include_obfuscation: bool | None = None


_UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "background": (lambda v: v in (None, False), "background responses are not supported"),
    "prompt": (absent, "prompt templates are not supported; send 'input' and 'instructions'"),
    "conversation": (absent, "conversations are not supported; use previous_response_id"),
    "truncation": (lambda v: v in (None, "disabled"), "only truncation 'disabled' is supported"),
    "service_tier": (lambda v: v in (None, "auto", "default"), "only the 'auto' and 'default' service tiers exist here"),
    "context_management": (absent, "context_management is not supported"),
    "moderation": (absent, "moderation is not supported"),
}


class ResponsesRequest(Sampling):
    """The OpenAI Responses request (fields in validation order)."""

    model: str = Field(min_length=1)
    input: str | list[InputItem]
    instructions: str | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)
    store: bool | None = None
    stream: bool = False
    stream_options: ResponsesStreamOptions | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    include: list[str] | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    tools: list[ResponsesFunctionTool] | None = None
    tool_choice: ResponsesToolChoice | None = None
    #: Accepted; the engine parses one call per reply (quartet/services/gateway/tool_plan.py).
    parallel_tool_calls: bool | None = None
    #: Accepted: a reply holds at most one call, which every limit of 1 or more allows.
    max_tool_calls: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    # Known, not implemented: see _UNSUPPORTED.
    background: Any = None
    prompt: Any = None
    conversation: Any = None
    truncation: Any = None
    service_tier: Any = None
    context_management: Any = None
    moderation: Any = None

    @field_validator("input")
    @classmethod
    def _some_input(cls, value: str | list[Any]) -> str | list[Any]:
        if value == "" or value == []:
            raise invalid("input must not be empty")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: ResponsesStreamOptions | None, info: ValidationInfo) -> Any:
        return check_stream_options(value, bool(info.data.get("stream")))

    @field_validator("include")
    @classmethod
    def _known_includes(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            if entry != LOGPROBS_INCLUDE:
                raise unsupported(f"include '{entry}' is not supported; only '{LOGPROBS_INCLUDE}' is")
        return value

    @field_validator(*_UNSUPPORTED)
    @classmethod
    def _refuse_unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        accepts, reason = _UNSUPPORTED[info.field_name]
        if not accepts(value):
            raise unsupported(f"{reason}; remove '{info.field_name}' from the request")
        return value

    @property
    def items(self) -> list[Any]:
        """The input as items: a string is one user message."""
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    @property
    def wants_logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.include or [])

    @property
    def format(self) -> TextFormat | None:
        return self.text.format if self.text else None

    @property
    def function_specs(self) -> list[FunctionSpec]:
        return [FunctionSpec(name=t.name or "", description=t.description or "", parameters=t.parameters) for t in self.tools or []]

    @property
    def tool_choice_name(self) -> str | None:
        """``tool_choice`` as tool_plan.plan_tools reads it: a mode, or the named function."""
        choice = self.tool_choice
        return choice.name if isinstance(choice, ResponsesNamedToolChoice) else choice
