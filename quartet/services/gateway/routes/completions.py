"""``POST /v1/completions``: the legacy text completions API over the engine's ``text``/``token_ids`` input.

Each prompt is one engine request; they run side by side and their events are
merged (``fanout``). A client that goes away cancels all of them.
"""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import APIRouter, Depends, Request, Response

from quartet.services.common.errors import QuartetError
from quartet.services.common.logs import debug_payloads
from quartet.services.gateway import convert
from quartet.services.gateway.disconnect import until_disconnect
from quartet.services.gateway.errors import constraint_refusal
from quartet.services.gateway.fanout import merge, peek_all
from quartet.services.gateway.limits import guard, resolve_max_tokens
from quartet.services.gateway.openapi import body_spec
from quartet.services.gateway.reply import json_reply
from quartet.services.gateway.request_body import parse_request
from quartet.services.gateway.schemas.completion_request import DEFAULT_MAX_TOKENS, CompletionRequest
from quartet.services.gateway.schemas.completion_response import Completion
from quartet.services.gateway.sse import sse_response
from quartet.services.gateway.state import GatewayState, gateway_state
from quartet.services.gateway.text_completion import TextCompletionInfo, TextTranscript, chunks, collect

log = logging.getLogger(__name__)
OPENAPI_MODELS = [CompletionRequest, Completion]
router = APIRouter(tags=["completions"], dependencies=[Depends(guard)])
ROUTE = "/v1/completions"

# The engine names its input fields; in this API they are all the prompt.
_PROMPT_FIELDS = ("input", "text", "token_ids")


def _refusal(error: BaseException) -> BaseException:
    """The engine's refusal in this API's words: its input fields are the prompt, its constraint the response_format."""
    if isinstance(error, QuartetError) and error.field in _PROMPT_FIELDS:
        error.field = "prompt"
    return constraint_refusal(error, "response_format")


@router.post(ROUTE, response_model=None, **body_spec(CompletionRequest, Completion))
async def create_completion(request: Request, state: GatewayState = Depends(gateway_state)) -> Response:
    body = await parse_request(request, CompletionRequest)
    await state.catalog.get(body.model)
    max_tokens = resolve_max_tokens(
        body.max_tokens, field="max_tokens", cap=state.settings.max_tokens_cap, default=DEFAULT_MAX_TOKENS
    )
    prompts = body.prompts
    info = TextCompletionInfo(
        id=f"cmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model,
        n=body.num_choices,
        echo=[prompt if body.echo and isinstance(prompt, str) else "" for prompt in prompts],
        num_logprobs=body.logprobs,
        include_usage=body.include_usage,
    )
    extra = {"request_id": info.id, "model": body.model, "stream": body.stream, "num_prompts": len(prompts)}
    if debug_payloads():
        extra["prompts"] = prompts
    log.info("completion", extra=extra)

    streams = [
        state.clients.engine.generate(
            convert.to_text_generate_request(body, prompt, f"{info.id}-{position}", max_tokens=max_tokens),
            state.metrics.meter(ROUTE),
        )
        for position, prompt in enumerate(prompts)
    ]
    transcript = TextTranscript(info)
    started = time.monotonic()

    def finished() -> None:
        for stream in streams:
            stream.cancel()
        log.info(
            "completion done",
            extra={
                "request_id": info.id,
                "finish_reasons": [c.finish_reason for c in transcript.choices.values()],
                "prompt_tokens": transcript.usage.prompt_tokens,
                "completion_tokens": transcript.usage.completion_tokens,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    headers = {"x-request-id": info.id}
    if not body.stream:
        try:
            completion = await until_disconnect(request, collect(merge(streams), transcript))
        except BaseException as error:
            raise _refusal(error) from None
        finally:
            finished()
        return json_reply(request, completion, headers=headers)
    try:
        # Every prompt's first event before answering, so a refusal of any is a real HTTP error.
        await until_disconnect(request, peek_all(streams))
    except BaseException as error:
        finished()
        raise _refusal(error) from None
    return sse_response(request, chunks(merge(streams), transcript), on_close=finished, headers=headers)
