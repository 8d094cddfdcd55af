"""One chat completion: engine events in, OpenAI chunks (streaming) or one completion out.

``Transcript`` keeps the state of every choice, so streaming and
non-streaming share one reading of the engine's events: each event becomes
the chunk choices it implies, and the choices' accumulated text becomes the
final message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from quartet.engine.v1 import engine_pb2

from quartet.services.gateway import convert
from quartet.services.common.engine_client import GenerateStream
from quartet.services.gateway.errors import Internal
from quartet.services.gateway.schemas.chat_response import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    FinishReason,
    FunctionCall,
    TokenLogprob,
    ToolCall,
    Usage,
)
from quartet.services.gateway.schemas.warnings import OutputWarning


@dataclass(slots=True)
class CompletionInfo:
    """What every chunk of one completion repeats."""

    id: str
    created: int
    model: str
    include_usage: bool = False
    wants_logprobs: bool = False


@dataclass(slots=True)
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ChoiceState:
    index: int
    started: bool = False
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    warnings: list[OutputWarning] | None = None


class Transcript:
    """All choices of one request, fed one engine event at a time."""

    def __init__(self, info: CompletionInfo) -> None:
        self.info = info
        self.choices: dict[int, ChoiceState] = {}
        self.usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)

    def _choice(self, index: int, out: list[ChunkChoice]) -> ChoiceState:
        state = self.choices.get(index)
        if state is None:
            state = self.choices[index] = ChoiceState(index)
        if not state.started:
            # OpenAI's first chunk of each choice names the role and carries no text yet.
            state.started = True
            out.append(ChunkChoice(index=index, delta=Delta(role="assistant", content="")))
        return state

    def apply(self, event: engine_pb2.GenerateResponse) -> list[ChunkChoice]:
        """Record the event; return the chunk choices to stream for it."""
        out: list[ChunkChoice] = []
        kind = event.WhichOneof("event")
        if kind == "chunk":
            self._apply_chunk(event.chunk, out)
        elif kind == "complete":
            complete = event.complete
            state = self._choice(complete.index, out)
            state.finish_reason = convert.finish_reason(complete)
            state.warnings = convert.warnings(complete)
            self.usage = convert.usage(complete.usage)
            out.append(
                ChunkChoice(index=complete.index, delta=Delta(), finish_reason=state.finish_reason, warnings=state.warnings)
            )
        return out

    def _apply_chunk(self, chunk: engine_pb2.Chunk, out: list[ChunkChoice]) -> None:
        state = self._choice(chunk.index, out)
        if chunk.HasField("usage"):
            self.usage = convert.usage(chunk.usage)
        positions = convert.logprobs(list(chunk.logprobs)) if self.info.wants_logprobs else []
        state.logprobs.extend(positions)
        choice_logprobs = ChoiceLogprobs(content=positions) if positions else None
        if chunk.kind == engine_pb2.DELTA_KIND_TOOL_CALL and chunk.HasField("tool_call"):
            call = chunk.tool_call
            parts = state.tool_calls.setdefault(call.index, _ToolCallParts())
            parts.id = parts.id or call.id
            parts.name = parts.name or call.name
            parts.arguments.append(call.arguments)
            delta = Delta(tool_calls=[convert.tool_call_delta(call)])
        elif chunk.kind == engine_pb2.DELTA_KIND_REASONING:
            if not chunk.text and not positions:
                return
            state.reasoning.append(chunk.text)
            delta = Delta(reasoning_content=chunk.text)
        else:
            # A chunk whose text is held back (a possible stop string) adds nothing yet.
            if not chunk.text and not positions:
                return
            state.content.append(chunk.text)
            delta = Delta(content=chunk.text)
        out.append(ChunkChoice(index=chunk.index, delta=delta, logprobs=choice_logprobs))

    def chunk(self, choices: list[ChunkChoice]) -> ChatCompletionChunk:
        info = self.info
        return ChatCompletionChunk(id=info.id, created=info.created, model=info.model, choices=choices)

    def usage_chunk(self) -> ChatCompletionChunk:
        info = self.info
        return ChatCompletionChunk(id=info.id, created=info.created, model=info.model, choices=[], usage=self.usage)

    def completion(self) -> ChatCompletion:
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            if state.finish_reason is None:
                raise Internal(f"the engine ended the stream before choice {index} was complete; see the engine log")
            tool_calls = [
                ToolCall(id=parts.id, function=FunctionCall(name=parts.name, arguments="".join(parts.arguments)))
                for _, parts in sorted(state.tool_calls.items())
            ]
            message = AssistantMessage(
                content="".join(state.content) if state.content or not tool_calls else None,
                tool_calls=tool_calls or None,
                reasoning_content="".join(state.reasoning) if state.reasoning else None,
            )
            logprobs = ChoiceLogprobs(content=state.logprobs) if self.info.wants_logprobs else None
            choices.append(
                Choice(
                    index=index, message=message, logprobs=logprobs, finish_reason=state.finish_reason, warnings=state.warnings
                )
            )
        if not choices:
            raise Internal("the engine ended the stream without any output; see the engine log")
        info = self.info
        return ChatCompletion(id=info.id, created=info.created, model=info.model, choices=choices, usage=self.usage)


async def collect(stream: GenerateStream, transcript: Transcript) -> ChatCompletion:
    """Run the stream to its end and return the whole completion."""
    async for event in stream.events():
        transcript.apply(event)
    return transcript.completion()


async def chunks(stream: GenerateStream, transcript: Transcript) -> AsyncIterator[ChatCompletionChunk]:
    """The streamed chunks of the completion, one choice per chunk, then the usage chunk if asked for."""
    async for event in stream.events():
        for choice in transcript.apply(event):
            yield transcript.chunk([choice])
    unfinished = [state.index for state in transcript.choices.values() if state.finish_reason is None]
    if unfinished or not transcript.choices:
        raise Internal("the engine ended the stream before every choice was complete; see the engine log")
    if transcript.info.include_usage:
        yield transcript.usage_chunk()
