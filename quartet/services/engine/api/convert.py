"""Protobuf <-> domain conversions for the engine, in one place."""

from __future__ import annotations

from quartet.engine.v1 import engine_pb2 as pb

from quartet.services.common import finish_reasons
from quartet.services.engine.api import events, request
from quartet.services.engine.api.events import DeltaKind, FinishReason

# The engine's reasons are named as common.finish_reasons names them, which owns the wire values.
_FINISH = {reason: finish_reasons.to_pb(reason.value) for reason in FinishReason}
_DELTA_KIND = {
    DeltaKind.CONTENT: pb.DELTA_KIND_CONTENT,
    DeltaKind.REASONING: pb.DELTA_KIND_REASONING,
    DeltaKind.TOOL_CALL: pb.DELTA_KIND_TOOL_CALL,
}
_PRIORITY = {
    pb.PRIORITY_UNSPECIFIED: request.Priority.DEFAULT,
    pb.PRIORITY_DEFAULT: request.Priority.DEFAULT,
    pb.PRIORITY_TOPIC: request.Priority.TOPIC,
    pb.PRIORITY_ROUTER: request.Priority.ROUTER,
}


def _optional(message, name: str):
    return getattr(message, name) if message.HasField(name) else None


def chat_from_pb(chat: pb.ChatInput) -> request.ChatInput:
    return request.ChatInput(
        messages=tuple(
            request.ChatMessage(
                role=m.role,
                content=m.content,
                name=m.name,
                tool_call_id=m.tool_call_id,
                tool_calls=tuple(request.ToolCall(c.id, c.name, c.arguments) for c in m.tool_calls),
                reasoning=m.reasoning,
            )
            for m in chat.messages
        ),
        tools=tuple(request.Tool(t.name, t.description, t.parameters_json) for t in chat.tools),
        parallel_tool_calls=chat.parallel_tool_calls,
    )


def input_from_pb(message) -> request.PromptInput | None:
    """The ``input`` oneof of GenerateRequest, TokenizeRequest or CountTokensRequest."""
    kind = message.WhichOneof("input")
    if kind == "text":
        return request.TextInput(message.text)
    if kind == "token_ids":
        return request.TokenInput(tuple(message.token_ids.ids))
    if kind == "chat":
        return chat_from_pb(message.chat)
    return None


def sampling_from_pb(s: pb.SamplingParams) -> request.SamplingParams:
    return request.SamplingParams(
        temperature=_optional(s, "temperature"),
        top_p=_optional(s, "top_p"),
        top_k=_optional(s, "top_k"),
        min_p=_optional(s, "min_p"),
        seed=_optional(s, "seed"),
        presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty,
        repetition_penalty=_optional(s, "repetition_penalty"),
        logit_bias=dict(s.logit_bias),
        logprobs=s.logprobs,
        top_logprobs=s.top_logprobs,
        n=_optional(s, "n"),
    )


def stopping_from_pb(s: pb.StoppingCriteria) -> request.StoppingCriteria:
    return request.StoppingCriteria(
        max_tokens=_optional(s, "max_tokens"),
        stop=tuple(s.stop),
        stop_token_ids=tuple(s.stop_token_ids),
        ignore_eos=s.ignore_eos,
    )


def constraint_from_pb(message: pb.GenerateRequest) -> request.Constraint | None:
    if not message.HasField("constraint"):
        return None
    kind = message.constraint.WhichOneof("kind")
    if kind is None:
        return None
    value = getattr(message.constraint, kind)
    if kind == "choice":
        value = tuple(value.choices)
    return request.Constraint(kind, value)


def generate_request_from_pb(message: pb.GenerateRequest) -> request.GenerateRequest:
    return request.GenerateRequest(
        input=input_from_pb(message),
        request_id=message.request_id,
        model=message.model,
        sampling=sampling_from_pb(message.sampling),
        stopping=stopping_from_pb(message.stopping),
        constraint=constraint_from_pb(message),
        priority=_PRIORITY.get(message.priority, request.Priority.DEFAULT),
    )


def usage_to_pb(usage: events.Usage) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


def _logprob_to_pb(entry: events.TokenLogprob) -> pb.TokenLogprob:
    return pb.TokenLogprob(token_id=entry.token_id, text=entry.text, logprob=entry.logprob)


def _tool_call_to_pb(delta: events.ToolCallDelta) -> pb.ToolCallDelta:
    return pb.ToolCallDelta(index=delta.index, id=delta.id, name=delta.name, arguments=delta.arguments)


def event_to_pb(event: events.Event) -> pb.GenerateResponse:
    if isinstance(event, events.Chunk):
        chunk = pb.Chunk(
            index=event.index,
            token_ids=event.token_ids,
            text=event.text,
            kind=_DELTA_KIND[event.kind],
            usage=usage_to_pb(event.usage),
            logprobs=[
                pb.PositionLogprobs(chosen=_logprob_to_pb(p.chosen), top=[_logprob_to_pb(t) for t in p.top])
                for p in event.logprobs
            ],
        )
        if event.tool_call is not None:
            chunk.tool_call.CopyFrom(_tool_call_to_pb(event.tool_call))
        return pb.GenerateResponse(chunk=chunk)
    if isinstance(event, events.Complete):
        t = event.timings
        return pb.GenerateResponse(
            complete=pb.Complete(
                index=event.index,
                finish_reason=_FINISH[event.finish_reason],
                usage=usage_to_pb(event.usage),
                timings=pb.Timings(
                    queue_seconds=t.queue_seconds,
                    time_to_first_token_seconds=t.time_to_first_token_seconds,
                    decode_tokens_per_second=t.decode_tokens_per_second,
                    total_seconds=t.total_seconds,
                ),
                matched_stop=event.matched_stop,
                constraint_closed=event.constraint_closed,
            )
        )
    return pb.GenerateResponse(error=pb.Error(code=event.code, message=event.message))


def model_info_to_pb(info: events.ModelInfo) -> pb.GetModelInfoResponse:
    return pb.GetModelInfoResponse(
        model_id=info.model_id,
        context_length=info.context_length,
        vocab_size=info.vocab_size,
        architecture=info.architecture,
        backend=info.backend,
        device=info.device,
        dtype=info.dtype,
        num_running=info.num_running,
        num_waiting=info.num_waiting,
        eos_token_ids=list(info.eos_token_ids),
    )
