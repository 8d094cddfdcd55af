"""Reading a request body: size limit first, then decryption, then strict validation into a model.

Routes call ``parse_request`` instead of declaring a body parameter, so that
every body problem becomes an OpenAI-shaped 400 (never FastAPI's 422), and so
that an encrypted envelope is opened in this one place: once it is, the
request remembers the envelope (``fernet.answer_envelope``) and every answer
to it, errors included, goes back sealed.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel

from quartet.services.gateway.errors import BadRequest, RequestTooLarge
from quartet.services.gateway.fernet import envelope_token
from quartet.services.gateway.validation import parse_body

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is {declared} bytes; the limit is {limit}", code="request_too_large")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise RequestTooLarge(f"the request body passes the limit of {limit} bytes", code="request_too_large")
        parts.append(part)
    return b"".join(parts)


async def parse_request(request: Request, model: type[ModelT]) -> ModelT:
    """The validated body; an encrypted one is opened first."""
    state = request.app.state.gateway
    raw = await read_body(request, state.settings.max_body_bytes)
    token = envelope_token(raw)
    if token is not None:
        if state.envelope is None:
            raise BadRequest(
                "this gateway has no ENCRYPTION_KEY, so it cannot open encrypted payloads; send plain JSON",
                code="encryption_not_configured",
            )
        raw = state.envelope.open(token)
        request.state.envelope = state.envelope
    elif state.envelope is not None and state.settings.require_encryption:
        raise BadRequest(
            'this gateway accepts only encrypted payloads: send {"encrypted": "<Fernet token of the JSON body>"}',
            code="encryption_required",
        )
    return parse_body(raw, model)
