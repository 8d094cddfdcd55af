"""Every failure the gateway returns, in OpenAI's shape, mapped in this one place.

Inside, code raises the typed errors of ``quartet.services.common.errors`` (or the few
gateway-specific subclasses below); gRPC failures of the other services become
those types in ``quartet.services.common.rpc``, their fields named as OpenAI
parameters by ``openai_param``. The handlers installed by
``install_error_handlers`` turn them into ``{"error": {message, type, param, code}}``
with the matching HTTP status, so no route builds an error body by hand.
"""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from quartet.services.common.errors import (
    Internal,
    InvalidArgument,
    NotFound,
    QuartetError,
    ResourceExhausted,
    Unavailable,
)
from quartet.services.gateway.schemas.errors import ErrorBody, ErrorResponse

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait before retrying a 503 (a supervised service restarts in about this).
UNAVAILABLE_RETRY_AFTER_SECONDS = 2

# OpenAI's error "type" per HTTP status; the SDK picks its exception class by status.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_implemented_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class BadRequest(InvalidArgument):
    """An invalid request, with OpenAI's machine-readable ``code`` (invalid_type, unknown_parameter, ...)."""

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


class UnsupportedParameter(BadRequest):
    """A known OpenAI parameter this gateway does not implement (yet)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field, code="unsupported_parameter")


def constraint_refusal(error: BaseException, param: str) -> BaseException:
    """An engine's refusal of its ``constraint`` is a refusal of the API's format parameter ``param``."""
    if isinstance(error, QuartetError) and (error.field or "").split(".")[0] == "constraint":
        return UnsupportedParameter(f"{param}: {error.message}", field=param)
    return error


class ModelNotFound(NotFound):
    code = "model_not_found"


class RequestTooLarge(BadRequest):
    http_status = 413


class Unauthorized(QuartetError):
    """No API key, or one this gateway does not know."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    code = "invalid_api_key"
    # RFC 6750: a 401 names the scheme the client should use.
    headers = {"WWW-Authenticate": "Bearer"}


class RateLimited(ResourceExhausted):
    """This key sent more requests than its share; ``retry_after`` says when the next one is allowed."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


def openai_param(field: str | None) -> str | None:
    """The OpenAI parameter for a field the engine named: its chat fields sit under "chat."."""
    if not field:
        return None
    if field.startswith("chat."):
        return field.removeprefix("chat.").split(".")[0]
    return field


def error_body(error: QuartetError) -> ErrorResponse:
    status = error.http_status
    return ErrorResponse(
        error=ErrorBody(
            message=error.message,
            type=_TYPE_BY_STATUS.get(status, "server_error"),
            param=error.field,
            code=getattr(error, "code", None),
        )
    )


def error_response(error: QuartetError, request: Request | None = None) -> Response:
    """The HTTP answer for ``error``; sealed when ``request`` came encrypted (its answers all are)."""
    body = error_body(error).model_dump_json().encode()
    envelope = getattr(request.state, "envelope", None) if request is not None else None
    if envelope is not None:
        body = envelope.seal_json(body)
    headers = dict(getattr(error, "headers", None) or {})
    if isinstance(error, Unavailable):
        # An upstream is down (restarting, usually): tell clients when to try again, as the
        # OpenAI SDK and most HTTP clients honour Retry-After on a 503.
        headers.setdefault("Retry-After", str(UNAVAILABLE_RETRY_AFTER_SECONDS))
    return Response(body, status_code=error.http_status, media_type="application/json", headers=headers or None)


def _plain(status: int, message: str, *, code: str | None = None) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorBody(message=message, type=_TYPE_BY_STATUS.get(status, "server_error"), param=None, code=code)
    )
    return JSONResponse(body.model_dump(), status_code=status)


async def _on_quartet_error(request: Request, error: QuartetError) -> Response:
    level = logging.WARNING if error.http_status >= 500 else logging.INFO
    extra = {"path": request.url.path, "status": error.http_status, "param": error.field}
    # A message may quote the request (a model name, a bad value); of a sealed request, nothing is logged.
    if getattr(request.state, "envelope", None) is None:
        extra["error"] = error.message
    log.log(level, "request failed", extra=extra)
    return error_response(error, request)


async def _on_http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
    if error.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /v1/models and /v1/chat/completions"
    elif error.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(error.detail)
    response = _plain(error.status_code, message)
    for key, value in (error.headers or {}).items():
        response.headers[key] = value
    return response


async def _on_request_validation(request: Request, error: RequestValidationError) -> JSONResponse:
    # Only path and query parameters can reach here (bodies go through quartet.services.gateway.request_body);
    # either way the answer is an OpenAI 400, never FastAPI's default 422.
    first = next(iter(error.errors()), {"loc": (), "msg": "invalid request"})
    param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    return error_response(BadRequest(f"{param or 'request'}: {first.get('msg')}", field=param, code="invalid_value"))


async def _on_unexpected(request: Request, error: Exception) -> Response:
    log.exception("unexpected error", extra={"path": request.url.path})
    return error_response(Internal(f"internal error in the gateway ({type(error).__name__}); see the gateway log"), request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QuartetError, _on_quartet_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(Exception, _on_unexpected)
