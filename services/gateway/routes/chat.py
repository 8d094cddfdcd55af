"""``POST /v1/chat/completions``: OpenAI Chat Completions over the engine's Generate stream."""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from services.common.logs import debug_payloads
from services.gateway import convert
from services.gateway.chat_completion import CompletionInfo, Transcript, chunks, collect
from services.gateway.disconnect import until_disconnect
from services.gateway.request_body import parse_request
from services.gateway.schemas.chat_request import ChatCompletionRequest
from services.gateway.sse import sse_response
from services.gateway.state import GatewayState, gateway_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["chat"])


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(request: Request, state: GatewayState = Depends(gateway_state)) -> Response:
    chat = await parse_request(request, ChatCompletionRequest, limit=state.settings.max_body_bytes)
    await state.catalog.get(chat.model)
    info = CompletionInfo(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=chat.model,
        include_usage=chat.include_usage,
        wants_logprobs=bool(chat.logprobs),
    )
    extra = {"request_id": info.id, "model": chat.model, "stream": chat.stream, "num_messages": len(chat.messages)}
    if debug_payloads():
        extra["messages"] = [m.model_dump(exclude_none=True) for m in chat.messages]
    log.info("chat completion", extra=extra)

    stream = state.clients.engine.generate(convert.to_generate_request(chat, info.id))
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
        finally:
            finished()
        return JSONResponse(completion.model_dump(mode="json"), headers=headers)
    try:
        # Read the first event before answering, so a refusal (bad max_tokens, ...) is a real HTTP error.
        await until_disconnect(request, stream.peek())
    except BaseException:
        finished()
        raise
    return sse_response(chunks(stream, transcript), on_close=finished, headers=headers)
