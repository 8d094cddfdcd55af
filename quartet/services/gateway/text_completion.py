"""One text completion: engine events of every prompt in, ``text_completion`` chunks or one answer out.

Like ``chat_completion.Transcript``, one reading of the events serves both
streaming and non-streaming. Events come tagged with their prompt's position;
prompt ``p``'s choice ``j`` is the answer's choice ``p * n + j``. An echoed
prompt leads its choices' text (and shifts their logprobs' text offsets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from quartet.engine.v1 import engine_pb2

from quartet.services.gateway import convert
from quartet.services.gateway.errors import Internal
from quartet.services.gateway.schemas.chat_response import Usage
from quartet.services.gateway.schemas.completion_response import (
    Completion,
    CompletionChoice,
    LegacyLogprobs,
    TextFinishReason,
)
from quartet.services.gateway.schemas.warnings import OutputWarning

Events = AsyncIterator[tuple[int, engine_pb2.GenerateResponse]]


@dataclass(slots=True)
class TextCompletionInfo:
    """What every chunk repeats, and how to read the events."""

    id: str
    created: int
    model: str
    #: Choices per prompt.
    n: int = 1
    #: Per prompt: the text to echo before its choices' output ("" for none).
    echo: list[str] = field(default_factory=list)
    #: The legacy ``logprobs`` (alternatives per token), None when not asked for.
    num_logprobs: int | None = None
    include_usage: bool = False


@dataclass(slots=True)
class _ChoiceState:
    index: int
    started: bool = False
    text: list[str] = field(default_factory=list)
    offset: int = 0
    logprobs: LegacyLogprobs | None = None
    finish_reason: TextFinishReason | None = None
    warnings: list[OutputWarning] | None = None


def _extend(total: LegacyLogprobs | None, part: LegacyLogprobs) -> LegacyLogprobs:
    if total is None:
        return part.model_copy(deep=True)
    total.tokens += part.tokens
    total.token_logprobs += part.token_logprobs
    total.top_logprobs += part.top_logprobs
    total.text_offset += part.text_offset
    return total


class TextTranscript:
    """All choices of one request, fed one tagged engine event at a time."""

    def __init__(self, info: TextCompletionInfo) -> None:
        self.info = info
        self.choices: dict[int, _ChoiceState] = {}
        self._usage_by_prompt: dict[int, Usage] = {}

    @property
    def usage(self) -> Usage:
        """The request's usage: the sum over its prompts of each one's latest count."""
        parts = self._usage_by_prompt.values()
        prompt = sum(u.prompt_tokens for u in parts)
        completion = sum(u.completion_tokens for u in parts)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def _choice(self, prompt_index: int, event_index: int) -> tuple[_ChoiceState, str]:
        """The choice's state, and the echoed prompt when this is its first event."""
        index = prompt_index * self.info.n + event_index
        state = self.choices.get(index)
        if state is None:
            state = self.choices[index] = _ChoiceState(index)
        if state.started:
            return state, ""
        state.started = True
        echo = self.info.echo[prompt_index] if prompt_index < len(self.info.echo) else ""
        state.text.append(echo)
        state.offset = len(echo)
        return state, echo

    def apply(self, prompt_index: int, event: engine_pb2.GenerateResponse) -> list[CompletionChoice]:
        """Record the event; return the chunk choices to stream for it."""
        kind = event.WhichOneof("event")
        if kind == "chunk":
            return self._apply_chunk(prompt_index, event.chunk)
        if kind != "complete":
            return []
        complete = event.complete
        state, echo = self._choice(prompt_index, complete.index)
        reason = convert.finish_reason(complete)
        # A text prompt cannot end in a tool call; OpenAI's text completions know only these.
        state.finish_reason = reason if reason in ("stop", "length", "content_filter") else "stop"
        state.warnings = convert.warnings(complete)
        self._usage_by_prompt[prompt_index] = convert.usage(complete.usage)
        return [CompletionChoice(index=state.index, text=echo, finish_reason=state.finish_reason, warnings=state.warnings)]

    def _apply_chunk(self, prompt_index: int, chunk: engine_pb2.Chunk) -> list[CompletionChoice]:
        state, echo = self._choice(prompt_index, chunk.index)
        if chunk.HasField("usage"):
            self._usage_by_prompt[prompt_index] = convert.usage(chunk.usage)
        logprobs = None
        if self.info.num_logprobs is not None and chunk.logprobs:
            logprobs = convert.legacy_logprobs(list(chunk.logprobs), offset=state.offset, num_top=self.info.num_logprobs)
            state.offset += sum(len(token) for token in logprobs.tokens)
            state.logprobs = _extend(state.logprobs, logprobs)
        text = echo + chunk.text
        # A chunk whose text is held back (a possible stop string) and carries nothing else is not sent.
        if not text and logprobs is None:
            return []
        state.text.append(chunk.text)
        return [CompletionChoice(index=state.index, text=text, logprobs=logprobs)]

    def chunk(self, choices: list[CompletionChoice]) -> Completion:
        info = self.info
        return Completion(id=info.id, created=info.created, model=info.model, choices=choices)

    def usage_chunk(self) -> Completion:
        info = self.info
        return Completion(id=info.id, created=info.created, model=info.model, choices=[], usage=self.usage)

    def unfinished(self) -> list[int]:
        expected = len(self.info.echo) * self.info.n
        return [i for i in range(expected) if i not in self.choices or self.choices[i].finish_reason is None]

    def completion(self) -> Completion:
        if self.unfinished():
            raise Internal("the engine ended a stream before every choice was complete; see the engine log")
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            logprobs = state.logprobs
            if self.info.num_logprobs is not None and logprobs is None:
                logprobs = LegacyLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
            choices.append(
                CompletionChoice(
                    index=index,
                    text="".join(state.text),
                    logprobs=logprobs,
                    finish_reason=state.finish_reason,
                    warnings=state.warnings,
                )
            )
        info = self.info
        return Completion(id=info.id, created=info.created, model=info.model, choices=choices, usage=self.usage)


async def collect(events: Events, transcript: TextTranscript) -> Completion:
    """Read every event and return the whole answer."""
    async for prompt_index, event in events:
        transcript.apply(prompt_index, event)
    return transcript.completion()


async def chunks(events: Events, transcript: TextTranscript) -> AsyncIterator[Completion]:
    """The streamed chunks, one choice per chunk, then the usage chunk if asked for."""
    async for prompt_index, event in events:
        for choice in transcript.apply(prompt_index, event):
            yield transcript.chunk([choice])
    if transcript.unfinished():
        raise Internal("the engine ended a stream before every choice was complete; see the engine log")
    if transcript.info.include_usage:
        yield transcript.usage_chunk()
