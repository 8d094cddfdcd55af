"""``POST /v1/chat/completions``: OpenAI Chat Completions over the engine's Generate stream."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request, Response

from quartet.services.common.logs import debug_payloads
from quartet.services.gateway import convert
from quartet.services.gateway.agent_chat import AgentTurn, run_request
from quartet.services.gateway.chat_completion import CompletionInfo, Transcript, chunks, collect
from quartet.services.gateway.disconnect import until_disconnect
from quartet.services.gateway.errors import ModelNotFound
from quartet.services.gateway.limits import guard, resolve_max_tokens
from quartet.services.gateway.openapi import body_spec
from quartet.services.gateway.reply import json_reply
from quartet.services.gateway.request_body import parse_request
from quartet.services.gateway.router_client import agent_name
from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest
from quartet.services.gateway.schemas.chat_response import ChatCompletion, ChatCompletionChunk
from quartet.services.gateway.sse import sse_response
from quartet.services.gateway.state import GatewayState, gateway_state
from quartet.services.gateway.tool_plan import plan_tools, refuse_agent_tools, tools_refusal

log = logging.getLogger(__name__)
OPENAPI_MODELS = [ChatCompletionRequest, ChatCompletion]
router = APIRouter(tags=["chat"], dependencies=[Depends(guard)])
ROUTE = "/v1/chat/completions"
TOOL_PARAMETERS = "tools[{index}].function.parameters"


@router.post(ROUTE, response_model=None, **body_spec(ChatCompletionRequest, ChatCompletion))
async def create_chat_completion(request: Request, state: GatewayState = Depends(gateway_state)) -> Response:
    chat = await parse_request(request, ChatCompletionRequest)
    agent = agent_name(chat.model)
    if agent is not None:
        refuse_agent_tools(chat)
        return await agent_chat_completion(request, state, chat, agent)
    await state.catalog.get(chat.model)
    tools = plan_tools(
        chat.function_specs,
        chat.tool_choice_name,
        architecture=state.catalog.architecture(chat.model),
        parallel=chat.parallel_tool_calls is not False,
    )
    limit = "max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens"
    max_tokens = resolve_max_tokens(chat.completion_limit, field=limit, cap=state.settings.max_tokens_cap)
    info = CompletionInfo(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=chat.model,
        include_usage=chat.include_usage,
        wants_logprobs=bool(chat.logprobs),
    )
    extra = {
        "request_id": info.id,
        "model": chat.model,
        "stream": chat.stream,
        "num_messages": len(chat.messages),
        "num_tools": len(tools.tools),
        "forces_tool_call": tools.forces_call,
    }
    if debug_payloads():
        extra["messages"] = [m.model_dump(exclude_none=True) for m in chat.messages]
    log.info("chat completion", extra=extra)

    pb = convert.to_generate_request(chat, info.id, max_tokens=max_tokens, tools=tools)
    stream = state.clients.engine.generate(pb, state.metrics.meter(ROUTE))
    transcript = Transcript(info)
    started = time.monotonic()

    def finished() -> None:
        stream.cancel()
        log.info(
            "chat completion done",
            extra={
                "request_id": info.id,
                "finish_reasons": [c.finish_reason for c in transcript.choices.values()],
                "prompt_tokens": transcript.usage.prompt_tokens,
                "completion_tokens": transcript.usage.completion_tokens,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    headers = {"x-request-id": info.id}
    if not chat.stream:
        try:
            completion = await until_disconnect(request, collect(stream, transcript))
        except BaseException as error:
            raise tools_refusal(error, tools, parameters_path=TOOL_PARAMETERS, format_param="response_format", limit_param=limit) from None
        finally:
            finished()
        return json_reply(request, completion, headers=headers)
    try:
        # Read the first event before answering, so a refusal (bad max_tokens, ...) is a real HTTP error.
        await until_disconnect(request, stream.peek())
    except BaseException as error:
        finished()
        raise tools_refusal(error, tools, parameters_path=TOOL_PARAMETERS, format_param="response_format", limit_param=limit) from None
    return sse_response(request, chunks(stream, transcript), on_close=finished, headers=headers)


async def agent_chat_completion(request: Request, state: GatewayState, chat: ChatCompletionRequest, agent: str) -> Response:
    """``agent/<name>``: one turn of a router topic agent (quartet/services/gateway/agent_chat.py)."""
    router_client = state.clients.router
    if router_client is None or not router_client.enabled:
        raise ModelNotFound(f"the model '{chat.model}' does not exist: agents are off (the gateway has no ROUTER_ADDRESS)", field="model")
    await router_client.topic_agent(agent)
    max_tokens = resolve_max_tokens(
        chat.completion_limit,
        field="max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens",
        cap=state.settings.max_tokens_cap,
    )
    info = CompletionInfo(id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=chat.model, include_usage=chat.include_usage)
    run = run_request(chat, agent, request.headers, info.id, max_tokens)
    log.info("agent chat completion", extra={"request_id": info.id, "agent": agent, "stream": chat.stream})
    turn = AgentTurn(router_client, run, info)
    headers = {"x-request-id": info.id}
    if not chat.stream:
        try:
            completion = await until_disconnect(request, _collect(turn))
        finally:
            await turn.close()
        return json_reply(request, completion, headers=headers)
    try:
        await until_disconnect(request, turn.start())
    except BaseException:
        await turn.close()
        raise

    def finished() -> None:
        # sse_response calls this synchronously; the generator's own finally closes the call.
        log.info("agent chat completion done", extra={"request_id": info.id, "completion_tokens": turn.usage.completion_tokens})

    return sse_response(request, _closing(turn), on_close=finished, headers=headers)


async def _collect(turn: AgentTurn) -> ChatCompletion:
    await turn.start()
    return await turn.completion()


async def _closing(turn: AgentTurn) -> AsyncIterator[ChatCompletionChunk]:
    try:
        async for chunk in turn.chunks():
            yield chunk
    finally:
        await turn.close()
