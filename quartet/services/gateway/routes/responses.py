"""``POST /v1/responses`` (OpenAI's Responses API), and ``GET``/``DELETE /v1/responses/{id}`` of stored ones.

A response is stored when ``store`` asks for it, or by default when the
gateway has a memory service; ``previous_response_id`` continues a stored one.
``text.format`` json_object / json_schema is sent to the engine as a
constraint: an engine without constraints refuses it, and the client gets a
400 naming ``text.format``. Function tools and ``tool_choice`` follow
``tool_plan.py``, as in Chat Completions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from quartet.services.common.errors import NotFound, QuartetError
from quartet.services.common.logs import debug_payloads
from quartet.services.gateway import convert
from quartet.services.common.engine_client import GenerateStream
from quartet.services.gateway.disconnect import until_disconnect
from quartet.services.gateway.errors import BadRequest
from quartet.services.gateway.limits import guard, resolve_max_tokens
from quartet.services.gateway.openapi import body_spec
from quartet.services.gateway.reply import json_reply
from quartet.services.gateway.request_body import parse_request
from quartet.services.gateway.response_store import ResponseStore, StoredResponse
from quartet.services.gateway.responses_builder import ResponseBuilder
from quartet.services.gateway.schemas.responses_object import (
    DeletedResponse,
    FormatEcho,
    FunctionToolEcho,
    NamedToolChoiceEcho,
    ReasoningEcho,
    TextEcho,
)
from quartet.services.gateway.schemas.responses_object import Response as ResponseObject
from quartet.services.gateway.schemas.responses_request import ResponsesRequest
from quartet.services.gateway.sse import sse_response
from quartet.services.gateway.schemas.tools import ResponsesNamedToolChoice
from quartet.services.gateway.state import GatewayState, gateway_state
from quartet.services.gateway.tool_plan import plan_tools, tools_refusal

log = logging.getLogger(__name__)
router = APIRouter(tags=["responses"], dependencies=[Depends(guard)])
ROUTE = "/v1/responses"
OPENAPI_MODELS = [ResponsesRequest, ResponseObject]


def _storing(body: ResponsesRequest, store: ResponseStore | None) -> bool:
    if store is None and body.store:
        raise BadRequest("store needs the memory service, which this gateway does not have (MEMORY_ADDRESS)", field="store")
    if store is None and body.previous_response_id:
        raise BadRequest(
            "previous_response_id needs stored responses, kept by the memory service, which this gateway does not have",
            field="previous_response_id",
        )
    return store is not None and body.store is not False


def _response(body: ResponsesRequest, storing: bool) -> ResponseObject:
    text_format = body.format
    echo = FormatEcho.model_validate(text_format.model_dump(by_alias=True)) if text_format else FormatEcho()
    choice = body.tool_choice
    tool_choice = NamedToolChoiceEcho(name=choice.name or "") if isinstance(choice, ResponsesNamedToolChoice) else (choice or "auto")
    tools = [
        FunctionToolEcho(name=tool.name or "", description=tool.description, parameters=tool.parameters, strict=tool.strict)
        for tool in body.tools or []
    ]
    return ResponseObject(
        id=f"resp_{uuid.uuid4().hex}",
        created_at=int(time.time()),
        status="in_progress",
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        model=body.model,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=body.previous_response_id,
        reasoning=ReasoningEcho(),
        store=storing,
        temperature=body.temperature,
        text=TextEcho(format=echo),
        tool_choice=tool_choice,
        tools=tools,
        top_logprobs=body.top_logprobs,
        top_p=body.top_p,
        user=body.user,
        metadata=body.metadata or {},
    )


async def _history(body: ResponsesRequest, store: ResponseStore | None) -> list:
    """The conversation a follow-up continues: the previous response's items and answer."""
    if not body.previous_response_id or store is None:
        return []
    try:
        stored = await store.get(body.previous_response_id)
    except NotFound:
        raise NotFound(
            f"previous_response_id: no stored response has the id '{body.previous_response_id}'", field="previous_response_id"
        ) from None
    return stored.conversation()


async def _keep(builder: ResponseBuilder, store: ResponseStore, items: list, *, asked: bool) -> None:
    """Store the finished response. Storing by default (store unset) gives way to the answer if memory fails."""
    try:
        await store.put(StoredResponse(response=builder.response, items=items))
    except QuartetError as error:
        if asked:
            raise
        log.warning("could not store the response; answering it unstored", extra={"request_id": builder.response.id, "error": error.message})
        builder.response.store = False


async def _events(
    builder: ResponseBuilder, stream: GenerateStream, store: ResponseStore | None, items: list, *, asked: bool
) -> AsyncIterator[BaseModel]:
    for event in builder.start():
        yield event
    async for engine_event in stream.events():
        for event in builder.apply(engine_event):
            yield event
    final = builder.finish()
    for event in final[:-1]:
        yield event
    last = final[-1]
    if store is not None:
        # Before the last event: a client may ask for the response as soon as it sees it completed.
        await _keep(builder, store, items, asked=asked)
        last = last.model_copy(update={"response": builder.response.model_copy(deep=True)})
    yield last


@router.post(ROUTE, response_model=None, **body_spec(ResponsesRequest, ResponseObject))
async def create_response(request: Request, state: GatewayState = Depends(gateway_state)) -> Response:
    body = await parse_request(request, ResponsesRequest)
    await state.catalog.get(body.model)
    tools = plan_tools(
        body.function_specs,
        body.tool_choice_name,
        architecture=state.catalog.architecture(body.model),
        parallel=body.parallel_tool_calls is not False,
    )
    max_tokens = resolve_max_tokens(body.max_output_tokens, field="max_output_tokens", cap=state.settings.max_tokens_cap)
    store = state.responses
    storing = _storing(body, store)
    items = [*await _history(body, store), *body.items]
    response = _response(body, storing)
    extra = {
        "request_id": response.id,
        "model": body.model,
        "stream": body.stream,
        "num_items": len(items),
        "store": storing,
        "num_tools": len(tools.tools),
        "forces_tool_call": tools.forces_call,
    }
    if debug_payloads():
        extra["items"] = [item.model_dump(exclude_none=True) for item in items]
    log.info("response", extra=extra)

    pb = convert.to_responses_generate_request(body, items, response.id, max_tokens=max_tokens, tools=tools)
    stream = state.clients.engine.generate(pb, state.metrics.meter(ROUTE))
    builder = ResponseBuilder(response, wants_logprobs=body.wants_logprobs)
    started = time.monotonic()

    def finished() -> None:
        stream.cancel()
        usage = response.usage
        log.info(
            "response done",
            extra={
                "request_id": response.id,
                "status": response.status,
                "input_tokens": usage.input_tokens if usage else 0,
                "output_tokens": usage.output_tokens if usage else 0,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    events = _events(builder, stream, store if storing else None, items, asked=body.store is True)
    headers = {"x-request-id": response.id}
    if not body.stream:
        try:
            await until_disconnect(request, _drain(events))
        except BaseException as error:
            raise tools_refusal(
                error, tools, parameters_path="tools[{index}].parameters", format_param="text.format", limit_param="max_output_tokens"
            ) from None
        finally:
            finished()
        return json_reply(request, builder.response, headers=headers)
    try:
        # Read the first engine event before answering, so a refusal is a real HTTP error.
        await until_disconnect(request, stream.peek())
    except BaseException as error:
        finished()
        raise tools_refusal(
                error, tools, parameters_path="tools[{index}].parameters", format_param="text.format", limit_param="max_output_tokens"
            ) from None
    return sse_response(request, events, on_close=finished, headers=headers, named=True, done=False, error_event=builder.fail)


async def _drain(events: AsyncIterator[BaseModel]) -> None:
    async for _ in events:
        pass


def _store(state: GatewayState) -> ResponseStore:
    if state.responses is None:
        raise BadRequest("stored responses need the memory service, which this gateway does not have (MEMORY_ADDRESS)")
    return state.responses


@router.get(f"{ROUTE}/{{response_id}}", response_model=None)
async def get_response(request: Request, response_id: str, state: GatewayState = Depends(gateway_state)) -> Response:
    stored = await _store(state).get(response_id)
    return json_reply(request, stored.response)


@router.delete(f"{ROUTE}/{{response_id}}", response_model=None)
async def delete_response(request: Request, response_id: str, state: GatewayState = Depends(gateway_state)) -> Response:
    await _store(state).delete(response_id)
    return json_reply(request, DeletedResponse(id=response_id))
