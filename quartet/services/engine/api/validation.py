"""Check a GenerateRequest against the proto's documented ranges and the loaded model. No torch.

Every failure is an InvalidArgument (or NotFound for the model name) that names
the offending field, so the gateway can point a client at it.
"""

from __future__ import annotations

from dataclasses import dataclass

from quartet.services.common.errors import InvalidArgument, NotFound, require
from quartet.services.common.sampling import MAX_TOP_LOGPROBS, RANGES
from quartet.services.engine.api.request import (
    ChatInput,
    GenerateRequest,
    PromptInput,
    SamplingParams,
    StoppingCriteria,
    TextInput,
    TokenInput,
)

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256
MAX_REQUEST_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class ModelLimits:
    model_id: str
    vocab_size: int
    context_length: int
    max_num_seqs: int


def check_model(model: str, served: str) -> None:
    if model and model != served:
        raise NotFound(f"model {model!r} is not served here; this engine serves {served!r} (or leave model empty)")


def check_request(request: GenerateRequest, limits: ModelLimits) -> None:
    """Everything that can be checked before tokenizing."""
    check_model(request.model, limits.model_id)
    require(
        len(request.request_id) <= MAX_REQUEST_ID_LENGTH,
        f"request_id is longer than {MAX_REQUEST_ID_LENGTH} characters",
        field="request_id",
    )
    check_input(request.input, limits.vocab_size)
    check_sampling(request.sampling, limits)
    check_stopping(request.stopping, limits.vocab_size)
    if request.constraint is not None:
        check_constraint(request)


CONSTRAINT_KINDS = ("json_object", "json_schema", "regex", "grammar", "choice", "tool_name")
MAX_CHOICES = 1024


def check_constraint(request: GenerateRequest) -> None:
    """The constraint's shape; what its grammar means is checked when it compiles (constraints/)."""
    constraint = request.constraint
    assert constraint is not None
    require(
        constraint.kind in CONSTRAINT_KINDS,
        f"constraint: {constraint.kind!r} is not one of {', '.join(CONSTRAINT_KINDS)}",
        field="constraint",
    )
    require(
        not request.stopping.ignore_eos,
        "stopping.ignore_eos: a constrained output ends when its grammar is complete; "
        "drop ignore_eos or the constraint",
        field="ignore_eos",
    )
    if constraint.kind == "choice":
        choices = tuple(constraint.value or ())  # type: ignore[arg-type]
        require(len(choices) > 0, "constraint.choice: give at least one choice", field="constraint.choice")
        require(
            len(choices) <= MAX_CHOICES, f"constraint.choice: at most {MAX_CHOICES} choices", field="constraint.choice"
        )
    if constraint.kind == "tool_name":
        tools = request.input.tools if isinstance(request.input, ChatInput) else ()
        require(
            any(t.name == constraint.value for t in tools),
            f"constraint.tool_name: {constraint.value!r} must name one of the chat.tools of the request",
            field="constraint.tool_name",
        )


def check_input(prompt: PromptInput | None, vocab_size: int) -> None:
    if prompt is None:
        raise InvalidArgument("input: set one of text, token_ids or chat", field="input")
    if isinstance(prompt, TextInput):
        require(prompt.text != "", "text: must not be empty", field="text")
    elif isinstance(prompt, TokenInput):
        require(len(prompt.ids) > 0, "token_ids: must not be empty", field="token_ids")
        bad = [i for i in prompt.ids if i >= vocab_size]
        require(not bad, f"token_ids: {bad[:5]} are outside the vocabulary (size {vocab_size})", field="token_ids")
    elif isinstance(prompt, ChatInput):
        check_chat(prompt)


def check_chat(chat: ChatInput) -> None:
    require(len(chat.messages) > 0, "chat.messages: must not be empty", field="chat.messages")
    for i, message in enumerate(chat.messages):
        require(
            message.role in ROLES,
            f"chat.messages[{i}].role: {message.role!r} is not one of {', '.join(ROLES)}",
            field="chat.messages.role",
        )
    for i, tool in enumerate(chat.tools):
        require(bool(tool.name), f"chat.tools[{i}].name: must not be empty", field="chat.tools.name")
    # As OpenAI: the flag only means something with tools, so a request without them is told so.
    require(
        not chat.parallel_tool_calls or bool(chat.tools),
        "chat.parallel_tool_calls: needs chat.tools; offer tools or leave it false",
        field="chat.parallel_tool_calls",
    )


def check_sampling(sampling: SamplingParams, limits: ModelLimits) -> None:
    s = sampling
    for name, allowed in RANGES.items():
        value = getattr(s, name) if name != "logit_bias" else None
        if value is not None:
            require(value in allowed, f"{name}: {value} is outside {allowed}", field=name)
    for token_id, bias in s.logit_bias.items():
        require(
            token_id < limits.vocab_size,
            f"logit_bias: token id {token_id} is outside the vocabulary (size {limits.vocab_size})",
            field="logit_bias",
        )
        require(
            bias in RANGES["logit_bias"],
            f"logit_bias: bias {bias} for token {token_id} is outside {RANGES['logit_bias']}",
            field="logit_bias",
        )
    require(
        s.top_logprobs <= MAX_TOP_LOGPROBS,
        f"top_logprobs: {s.top_logprobs} is more than {MAX_TOP_LOGPROBS}",
        field="top_logprobs",
    )
    require(s.top_logprobs == 0 or s.logprobs, "top_logprobs: needs logprobs set to true", field="top_logprobs")
    if s.n is not None:
        require(s.n >= 1, "n: must be at least 1", field="n")
        require(
            s.n <= limits.max_num_seqs,
            f"n: {s.n} is more than this engine runs at once ({limits.max_num_seqs}, ENGINE_MAX_NUM_SEQS)",
            field="n",
        )


def check_stopping(stopping: StoppingCriteria, vocab_size: int) -> None:
    if stopping.max_tokens is not None:
        require(
            stopping.max_tokens >= 1,
            "max_tokens: must be at least 1 (or unset for up to the context length)",
            field="max_tokens",
        )
    require(len(stopping.stop) <= MAX_STOP_STRINGS, f"stop: at most {MAX_STOP_STRINGS} stop strings", field="stop")
    for text in stopping.stop:
        require(text != "", "stop: stop strings must not be empty", field="stop")
        require(
            len(text) <= MAX_STOP_LENGTH, f"stop: stop strings are at most {MAX_STOP_LENGTH} characters", field="stop"
        )
    bad = [i for i in stopping.stop_token_ids if i >= vocab_size]
    require(
        not bad, f"stop_token_ids: {bad[:5]} are outside the vocabulary (size {vocab_size})", field="stop_token_ids"
    )


def resolve_max_tokens(stopping: StoppingCriteria, num_prompt_tokens: int, context_length: int) -> int:
    """The output budget: max_tokens if it fits the context with the prompt, else a precise error."""
    room = context_length - num_prompt_tokens
    if room <= 0:
        raise InvalidArgument(
            f"input: the prompt has {num_prompt_tokens} tokens but the context length is {context_length}; shorten the prompt",
            field="input",
        )
    if stopping.max_tokens is None:
        return room
    require(
        stopping.max_tokens <= room,
        f"max_tokens: prompt ({num_prompt_tokens} tokens) + max_tokens ({stopping.max_tokens}) = "
        f"{num_prompt_tokens + stopping.max_tokens} exceeds the context length {context_length}; "
        f"ask for at most {room} tokens",
        field="max_tokens",
    )
    return stopping.max_tokens
