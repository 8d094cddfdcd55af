"""The Responses API's ``response`` object and its output items, as OpenAI returns them.

Field names and nullability follow OpenAI's, so the official SDK's ``Response``
type parses them (and its ``output_text`` joins the text of the output).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quartet.services.gateway.schemas.warnings import MayWarn

ResponseStatus = Literal["completed", "failed", "in_progress", "incomplete"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputTopLogprob(BaseModel):
    token: str
    bytes: list[int]
    logprob: float


class OutputLogprob(OutputTopLogprob):
    top_logprobs: list[OutputTopLogprob]


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[OutputLogprob] = Field(default_factory=list)


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: ItemStatus
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class OutputReasoning(BaseModel):
    """A reasoning model's thoughts (gpt-oss's analysis channel), as text; no summaries are made."""

    type: Literal["reasoning"] = "reasoning"
    id: str
    status: ItemStatus
    summary: list[Any] = Field(default_factory=list)
    content: list[ReasoningText]


class OutputFunctionCall(BaseModel):
    """A call of one of the request's function tools; its result comes back as a function_call_output item."""

    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


OutputItem = OutputMessage | OutputReasoning | OutputFunctionCall


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class ResponseError(BaseModel):
    code: str
    message: str


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class FormatEcho(BaseModel):
    """``text.format`` as the response reports it."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class FunctionToolEcho(BaseModel):
    """A function tool as the response lists it."""

    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedToolChoiceEcho(BaseModel):
    type: Literal["function"] = "function"
    name: str


class TextEcho(BaseModel):
    format: FormatEcho = Field(default_factory=FormatEcho)


class ReasoningEcho(BaseModel):
    effort: str | None = None
    summary: str | None = None


class Response(MayWarn):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningEcho = Field(default_factory=ReasoningEcho)
    store: bool
    temperature: float | None = None
    text: TextEcho = Field(default_factory=TextEcho)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoiceEcho = "auto"
    tools: list[FunctionToolEcho] = Field(default_factory=list)
    top_logprobs: int | None = None
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    background: bool = False
    service_tier: str = "default"


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True
