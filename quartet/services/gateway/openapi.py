"""``/openapi.json`` that describes the bodies the routes really parse.

Routes read their bodies themselves (``request_body.parse_request``: size
limit, decryption, strict validation), so FastAPI cannot see them. Each route
refers to its request and answer models with ``body_spec``, and its module
lists them in ``OPENAPI_MODELS``; ``install_openapi`` adds those models' JSON
Schemas to the document, with the Fernet envelope as the alternative of
every body and answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from quartet.services.gateway.schemas.encrypted import EncryptedEnvelope
from quartet.services.gateway.schemas.errors import ErrorResponse

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def body_spec(request: type[BaseModel], answer: type[BaseModel], *, streams: bool = True) -> dict[str, Any]:
    """Decorator keywords (``openapi_extra``, ``responses``) documenting a route's body and answers."""
    json_answer = {"schema": {"oneOf": [_ref(answer), _ref(EncryptedEnvelope)]}}
    content: dict[str, Any] = {"application/json": json_answer}
    if streams:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": f"With stream=true: server-sent events of {answer.__name__} chunks."}
        }
    error = {"content": {"application/json": {"schema": _ref(ErrorResponse)}}}
    return {
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"oneOf": [_ref(request), _ref(EncryptedEnvelope)]}}},
            },
        },
        "responses": {
            200: {"description": "The answer", "content": content},
            400: {"description": "Invalid request (param names the field)", **error},
            401: {"description": "Missing or wrong API key", **error},
            429: {"description": "Rate limited; see Retry-After", **error},
        },
    }


def install_openapi(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Replace ``app.openapi`` with one that also holds the schemas of ``models`` (those ``body_spec`` names)."""
    models = [EncryptedEnvelope, ErrorResponse, *models]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            unique = list(dict.fromkeys(models))
            _, defs = models_json_schema([(model, "validation") for model in unique], ref_template=_REF)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in defs.get("$defs", {}).items():
                schemas.setdefault(name, schema)
            _no_422(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _no_422(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 for query parameters; the gateway answers those with an OpenAI 400."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault(
                    "400",
                    {"description": "Invalid parameter", "content": {"application/json": {"schema": _ref(ErrorResponse)}}},
                )
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
