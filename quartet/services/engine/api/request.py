"""What a caller asks the engine for: plain dataclasses, no protobuf, no torch.

Unset optional fields are ``None`` and take the engine's defaults; validation
lives in ``validation.py`` so these stay dumb records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Priority(enum.IntEnum):
    """Queue order; higher runs first (mirrors quartet.engine.v1.Priority)."""

    DEFAULT = 1
    TOPIC = 2
    ROUTER = 3


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str
    name: str = ""
    tool_call_id: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""  # an assistant's analysis-channel text (Harmony)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters_json: str = ""


@dataclass(frozen=True, slots=True)
class ChatInput:
    messages: tuple[ChatMessage, ...]
    tools: tuple[Tool, ...] = ()
    #: Whether a reply may hold several tool calls (proto default false: at most one).
    parallel_tool_calls: bool = False


@dataclass(frozen=True, slots=True)
class TextInput:
    text: str


@dataclass(frozen=True, slots=True)
class TokenInput:
    ids: tuple[int, ...]


PromptInput = TextInput | TokenInput | ChatInput


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    n: int | None = None


@dataclass(frozen=True, slots=True)
class StoppingCriteria:
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True, slots=True)
class Constraint:
    """An output constraint; ``kind`` is the proto oneof's field name (json_object, regex, choice, ...)."""

    kind: str
    value: object = None


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    input: PromptInput | None
    request_id: str = ""
    model: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stopping: StoppingCriteria = field(default_factory=StoppingCriteria)
    constraint: Constraint | None = None
    priority: Priority = Priority.DEFAULT
