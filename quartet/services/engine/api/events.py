"""What the engine streams back, and what it reports about itself: plain dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    ABORT = "abort"
    ERROR = "error"


class DeltaKind(enum.Enum):
    """What a chunk's text is (mirrors quartet.engine.v1.DeltaKind)."""

    CONTENT = "content"
    REASONING = "reasoning"
    TOOL_CALL = "tool_call"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A streamed piece of a tool call: ``id`` and ``name`` come with a call's first delta, then argument text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Timings:
    queue_seconds: float
    time_to_first_token_seconds: float
    decode_tokens_per_second: float
    total_seconds: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True, slots=True)
class PositionLogprobs:
    chosen: TokenLogprob
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """New output of one choice: token ids since the last chunk and the text they released.

    ``kind`` types ``text``; a tool call's pieces come as ``tool_call`` with ``kind`` TOOL_CALL
    (its ``text`` is then empty). One token may release several typed pieces: the first chunk
    carries the token ids and logprobs, the rest carry none.
    """

    index: int
    token_ids: tuple[int, ...]
    text: str
    usage: Usage
    logprobs: tuple[PositionLogprobs, ...] = ()
    kind: DeltaKind = DeltaKind.CONTENT
    tool_call: ToolCallDelta | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    """The end of one choice."""

    index: int
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    matched_stop: str = ""
    #: The token budget ran out inside a constraint and the engine wrote the grammar's shortest ending.
    constraint_closed: bool = False


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A failure after the stream started; ``code`` is a gRPC status code name."""

    code: str
    message: str


Event = Chunk | Complete | ErrorEvent


@dataclass(frozen=True, slots=True)
class ModelInfo:
    model_id: str
    context_length: int
    vocab_size: int
    architecture: str
    backend: str
    device: str
    dtype: str
    num_running: int
    num_waiting: int
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)
