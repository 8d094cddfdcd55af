"""Server-sent events as OpenAI streams them: ``data: {json}\\n\\n`` ... ``data: [DONE]\\n\\n``.

A failure after the stream started cannot change the HTTP status any more,
so it is sent as one error event (the SDK raises it as APIError), followed by
``[DONE]`` where the API uses it. The Responses API names each event
(``event: response.created``) and sends no ``[DONE]``.

An answer to an encrypted request seals each event: ``data: {"encrypted":
"<token>"}``. The event names are left out then (the type is inside the
sealed JSON), and only the ``[DONE]`` sentinel stays in clear: it carries
nothing but the end of the stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from quartet.services.common.errors import QuartetError
from quartet.services.gateway.errors import Internal, error_body
from quartet.services.gateway.fernet import Envelope, answer_envelope

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

#: The event(s) that report a failure inside a stream.
ErrorEvent = Callable[[QuartetError], BaseModel | list[BaseModel]]


def event(payload: BaseModel, *, envelope: Envelope | None = None, name: str | None = None) -> bytes:
    """One SSE frame of ``payload``: sealed when ``envelope`` is given, named when ``name`` is."""
    data = payload.model_dump_json().encode()
    if envelope is not None:
        return b"data: " + envelope.seal_json(data) + b"\n\n"
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + data + b"\n\n"


def _name(payload: BaseModel, named: bool) -> str | None:
    return getattr(payload, "type", None) if named else None


def _failure(error: QuartetError, error_event: ErrorEvent, envelope: Envelope | None, named: bool) -> bytes:
    payloads = error_event(error)
    payloads = payloads if isinstance(payloads, list) else [payloads]
    return b"".join(event(payload, envelope=envelope, name=_name(payload, named)) for payload in payloads)


async def _frames(
    items: AsyncIterator[BaseModel],
    *,
    on_close: Callable[[], None],
    on_failure: Callable[[int], None],
    envelope: Envelope | None,
    named: bool,
    done: bool,
    error_event: ErrorEvent,
) -> AsyncIterator[bytes]:
    try:
        async for item in items:
            yield event(item, envelope=envelope, name=_name(item, named))
    except QuartetError as error:
        log.info("stream failed", extra={"status": error.http_status, "error": error.message})
        on_failure(error.http_status)
        yield _failure(error, error_event, envelope, named)
    except Exception as error:  # noqa: BLE001 - the client must still get an error event
        log.exception("stream failed unexpectedly")
        on_failure(500)
        internal = Internal(f"internal error in the gateway ({type(error).__name__}); see the gateway log")
        yield _failure(internal, error_event, envelope, named)
    finally:
        # Reached on completion, on error, and when the client disconnects (cancellation).
        on_close()
    if done:
        yield DONE


def sse_response(
    request: Request,
    items: AsyncIterator[BaseModel],
    *,
    on_close: Callable[[], None],
    headers: dict[str, str] | None = None,
    named: bool = False,
    done: bool = True,
    error_event: ErrorEvent = error_body,
) -> StreamingResponse:
    """Stream ``items`` as SSE; ``on_close`` runs however the stream ends (cancel the upstream call there).

    ``named`` adds ``event: <item.type>`` lines; ``done`` ends with ``[DONE]``;
    ``error_event`` builds the event sent for a failure.
    """
    metrics = request.app.state.gateway.metrics
    route = getattr(request.scope.get("route"), "path", request.url.path)
    frames = _frames(
        items,
        on_close=on_close,
        on_failure=lambda status: metrics.stream_failed(route, status),
        envelope=answer_envelope(request),
        named=named,
        done=done,
        error_event=error_event,
    )
    return StreamingResponse(frames, media_type="text/event-stream", headers={**HEADERS, **(headers or {})})
