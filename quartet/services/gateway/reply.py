"""A whole JSON answer, sealed in the Fernet envelope when the request came sealed."""

from __future__ import annotations

from fastapi import Request, Response
from pydantic import BaseModel

from quartet.services.gateway.fernet import answer_envelope


def json_reply(request: Request, payload: BaseModel, *, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    body = payload.model_dump_json().encode()
    envelope = answer_envelope(request)
    if envelope is not None:
        body = envelope.seal_json(body)
    return Response(body, status_code=status, media_type="application/json", headers=headers)
