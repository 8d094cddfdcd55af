"""Reading a request body: size limit first, then strict validation into a model.

Routes call ``parse_request`` instead of declaring a body parameter, so that
every body problem becomes an OpenAI-shaped 400 (never FastAPI's 422), and so
that a transformation of the raw bytes (Fernet decryption) has one place to go.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel

from services.gateway.errors import RequestTooLarge
from services.gateway.validation import parse_body

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


async def parse_request(request: Request, model: type[ModelT], *, limit: int) -> ModelT:
    return parse_body(await read_body(request, limit), model)
