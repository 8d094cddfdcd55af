"""Server-sent events as OpenAI streams them: ``data: {json}\\n\\n`` ... ``data: [DONE]\\n\\n``.

A failure after the stream started cannot change the HTTP status any more,
so it is sent as one ``data: {"error": {...}}`` event (the SDK raises it as
APIError), followed by ``[DONE]``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from pydantic import BaseModel
from starlette.responses import StreamingResponse

from services.common.errors import QuartetError
from services.gateway.errors import Internal, error_body

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: BaseModel) -> bytes:
    return b"data: " + payload.model_dump_json().encode() + b"\n\n"


async def _frames(items: AsyncIterator[BaseModel], on_close: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        async for item in items:
            yield event(item)
    except QuartetError as error:
        log.info("stream failed", extra={"status": error.http_status, "error": error.message})
        yield event(error_body(error))
    except Exception as error:  # noqa: BLE001 - the client must still get an error event
        log.exception("stream failed unexpectedly")
        yield event(error_body(Internal(f"internal error in the gateway ({type(error).__name__}); see the gateway log")))
    finally:
        # Reached on completion, on error, and when the client disconnects (cancellation).
        on_close()
    yield DONE


def sse_response(
    items: AsyncIterator[BaseModel], *, on_close: Callable[[], None], headers: dict[str, str] | None = None
) -> StreamingResponse:
    """Stream ``items`` as SSE; ``on_close`` runs however the stream ends (cancel the upstream call there)."""
    return StreamingResponse(
        _frames(items, on_close), media_type="text/event-stream", headers={**HEADERS, **(headers or {})}
    )
