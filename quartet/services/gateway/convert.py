"""OpenAI JSON to the engine's protos and back: the gateway's one conversion module."""

from __future__ import annotations

import json

from quartet.engine.v1 import engine_pb2

from quartet.services.common.finish_reasons import openai_finish_reason
from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest, ChatMessage
from quartet.services.gateway.schemas.chat_response import (
    DeltaFunctionCall,
    DeltaToolCall,
    FinishReason,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from quartet.services.gateway.schemas.completion_request import CompletionRequest
from quartet.services.gateway.schemas.completion_response import LegacyLogprobs
from quartet.services.gateway.schemas.responses_request import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    MessageItem,
    ResponsesRequest,
)
from quartet.services.gateway.schemas.sampling import Sampling, TextSampling
from quartet.services.gateway.schemas.warnings import CONSTRAINT_CLOSED, OutputWarning
from quartet.services.gateway.tool_plan import ToolPlan


_UINT64_MASK = 2**64 - 1


def _message(message: ChatMessage) -> engine_pb2.ChatMessage:
    return engine_pb2.ChatMessage(
        role=message.role,
        content=message.text(),
        name=message.name or "",
        tool_call_id=message.tool_call_id or "",
        tool_calls=[
            engine_pb2.ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
            for call in message.tool_calls or []
        ],
        reasoning=message.reasoning_content or "",
    )


def _sampling(fields: Sampling, *, n: int | None, logprobs: bool, top_logprobs: int) -> engine_pb2.SamplingParams:
    """The engine's sampling parameters from the one validated sampling model (schemas/sampling.py)."""
    sampling = engine_pb2.SamplingParams(logprobs=logprobs, top_logprobs=top_logprobs)
    if isinstance(fields, TextSampling):
        sampling.presence_penalty = fields.presence_penalty or 0.0
        sampling.frequency_penalty = fields.frequency_penalty or 0.0
        sampling.logit_bias.update({int(token): bias for token, bias in (fields.logit_bias or {}).items()})
    # Optional proto fields stay unset unless the client chose a value: unset means "engine default".
    for name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty"):
        value = getattr(fields, name)
        if value is not None:
            setattr(sampling, name, value)
    if n is not None:
        sampling.n = n
    if fields.seed is not None:
        # OpenAI seeds are signed 64-bit; the engine's are unsigned. Two's complement keeps them distinct.
        sampling.seed = fields.seed & _UINT64_MASK
    return sampling


def _stopping(fields: Sampling, max_tokens: int | None) -> engine_pb2.StoppingCriteria:
    stopping = engine_pb2.StoppingCriteria(ignore_eos=bool(fields.ignore_eos))
    if isinstance(fields, TextSampling):
        stopping.stop.extend(fields.stop_list)
        stopping.stop_token_ids.extend(fields.stop_token_ids or [])
    if max_tokens is not None:
        stopping.max_tokens = max_tokens
    return stopping


def _constrain(pb: engine_pb2.GenerateRequest, kind: str, schema: dict | None) -> None:
    """An output format as the engine's constraint: any JSON object, or JSON fitting ``schema``."""
    if kind == "json_object":
        pb.constraint.json_object = True
    elif kind == "json_schema":
        pb.constraint.json_schema = json.dumps(schema if schema is not None else {})


def _offer_tools(pb: engine_pb2.GenerateRequest, plan: ToolPlan) -> None:
    """The plan's tools in ``chat.tools``, and the constraint that forces a call when it asks for one."""
    for tool in plan.tools:
        parameters = json.dumps(tool.parameters) if tool.parameters is not None else ""
        pb.chat.tools.append(engine_pb2.Tool(name=tool.name, description=tool.description, parameters_json=parameters))
    pb.chat.parallel_tool_calls = plan.parallel and bool(plan.tools)
    if plan.forced_tool is not None:
        pb.constraint.tool_name = plan.forced_tool
    elif plan.any_call_schema is not None:
        pb.constraint.json_schema = json.dumps(plan.any_call_schema)


def to_generate_request(
    request: ChatCompletionRequest, request_id: str, *, max_tokens: int | None = None, tools: ToolPlan | None = None
) -> engine_pb2.GenerateRequest:
    """The engine request of a chat completion; ``max_tokens`` (the capped limit) overrides the request's.

    ``tools`` is the resolved tools and tool_choice; a forced call takes the place of response_format,
    which shapes content and a forced call has none.
    """
    pb = engine_pb2.GenerateRequest(
        request_id=request_id,
        model=request.model,
        chat=engine_pb2.ChatInput(messages=[_message(m) for m in request.messages]),
        sampling=_sampling(request, n=request.n, logprobs=bool(request.logprobs), top_logprobs=request.top_logprobs or 0),
        stopping=_stopping(request, max_tokens if max_tokens is not None else request.completion_limit),
        priority=engine_pb2.PRIORITY_DEFAULT,
    )
    if tools is not None:
        _offer_tools(pb, tools)
    response_format = request.response_format
    if response_format is not None and not (tools is not None and tools.forces_call):
        schema = response_format.json_schema.schema_ if response_format.json_schema else None
        _constrain(pb, response_format.type, schema)
    return pb


def to_text_generate_request(
    request: CompletionRequest, prompt: str | list[int], request_id: str, *, max_tokens: int | None
) -> engine_pb2.GenerateRequest:
    """The engine request of one prompt of a text completion: raw text or token ids, no chat template."""
    # The legacy logprobs=k asks for k alternatives; logprobs=0 still wants the chosen token's.
    wants = request.logprobs is not None
    pb = engine_pb2.GenerateRequest(
        request_id=request_id,
        model=request.model,
        sampling=_sampling(request, n=request.n, logprobs=wants, top_logprobs=request.logprobs or 0),
        stopping=_stopping(request, max_tokens),
        priority=engine_pb2.PRIORITY_DEFAULT,
    )
    if isinstance(prompt, str):
        pb.text = prompt
    else:
        pb.token_ids.ids.extend(prompt)
    response_format = request.response_format
    if response_format is not None:
        schema = response_format.json_schema.schema_ if response_format.json_schema else None
        _constrain(pb, response_format.type, schema)
    return pb


def finish_reason(complete: engine_pb2.Complete) -> FinishReason:
    """OpenAI's finish_reason; an aborted or failed choice raises (``common.finish_reasons``)."""
    return openai_finish_reason(complete.finish_reason)


def warnings(complete: engine_pb2.Complete) -> list[OutputWarning] | None:
    """The warnings of a finished choice, None when there are none."""
    return [CONSTRAINT_CLOSED] if complete.constraint_closed else None


def usage(usage_pb: engine_pb2.Usage) -> Usage:
    return Usage(
        prompt_tokens=usage_pb.prompt_tokens,
        completion_tokens=usage_pb.completion_tokens,
        total_tokens=usage_pb.total_tokens,
    )


def _top(entry: engine_pb2.TokenLogprob) -> TopLogprob:
    return TopLogprob(token=entry.text, logprob=entry.logprob, bytes=list(entry.text.encode("utf-8")))


def logprobs(positions: list[engine_pb2.PositionLogprobs]) -> list[TokenLogprob]:
    return [
        TokenLogprob(
            token=position.chosen.text,
            logprob=position.chosen.logprob,
            bytes=list(position.chosen.text.encode("utf-8")),
            top_logprobs=[_top(entry) for entry in position.top],
        )
        for position in positions
    ]


def tool_call_delta(delta: engine_pb2.ToolCallDelta) -> DeltaToolCall:
    first = bool(delta.id or delta.name)
    return DeltaToolCall(
        index=delta.index,
        id=delta.id or None,
        type="function" if first else None,
        function=DeltaFunctionCall(name=delta.name or None, arguments=delta.arguments),
    )


def legacy_logprobs(positions: list[engine_pb2.PositionLogprobs], *, offset: int, num_top: int) -> LegacyLogprobs:
    """The Completions API's logprobs for ``positions``, the first token starting at character ``offset``."""
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top: list[dict[str, float] | None] = []
    offsets: list[int] = []
    for position in positions:
        chosen = position.chosen
        tokens.append(chosen.text)
        token_logprobs.append(chosen.logprob)
        # OpenAI always lists the chosen token among the alternatives, so there may be num_top + 1.
        alternatives = {entry.text: entry.logprob for entry in list(position.top)[:num_top]}
        alternatives.setdefault(chosen.text, chosen.logprob)
        top.append(alternatives)
        offsets.append(offset)
        offset += len(chosen.text)
    return LegacyLogprobs(tokens=tokens, token_logprobs=token_logprobs, top_logprobs=top, text_offset=offsets)


def _responses_messages(items: list[InputItem], instructions: str | None) -> list[engine_pb2.ChatMessage]:
    """Responses input items as chat messages: function calls join the assistant turn they belong to."""
    messages = [engine_pb2.ChatMessage(role="system", content=instructions)] if instructions else []
    for item in items:
        if isinstance(item, MessageItem):
            messages.append(engine_pb2.ChatMessage(role=item.role, content=item.text()))
        elif isinstance(item, FunctionCallItem):
            call = engine_pb2.ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
            if not messages or messages[-1].role != "assistant":
                messages.append(engine_pb2.ChatMessage(role="assistant"))
            messages[-1].tool_calls.append(call)
        elif isinstance(item, FunctionCallOutputItem):
            messages.append(engine_pb2.ChatMessage(role="tool", content=item.text(), tool_call_id=item.call_id))
        # Reasoning items are not fed back: a reasoning model's earlier thoughts are not part of its prompt.
    return messages


def to_responses_generate_request(
    request: ResponsesRequest, items: list[InputItem], request_id: str, *, max_tokens: int | None, tools: ToolPlan | None = None
) -> engine_pb2.GenerateRequest:
    """The engine request of a response: ``items`` is the whole conversation (earlier turns included).

    ``tools`` as in ``to_generate_request``: a forced call takes the place of text.format.
    """
    pb = engine_pb2.GenerateRequest(
        request_id=request_id,
        model=request.model,
        chat=engine_pb2.ChatInput(messages=_responses_messages(items, request.instructions)),
        sampling=_sampling(request, n=None, logprobs=request.wants_logprobs, top_logprobs=request.top_logprobs or 0),
        stopping=_stopping(request, max_tokens),
        priority=engine_pb2.PRIORITY_DEFAULT,
    )
    if tools is not None:
        _offer_tools(pb, tools)
    if request.format is not None and not (tools is not None and tools.forces_call):
        _constrain(pb, request.format.type, request.format.schema_)
    return pb
