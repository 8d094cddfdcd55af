"""Typed errors, raised inside cores and mapped to a protocol status once, at each edge.

Every error says what was wrong and, where it helps, what to do next. The gRPC
interceptor (``quartet.services.common.grpc_server``) and the gateway's exception handler
are the only places that translate them to a status, and ``quartet.services.common.rpc``
the only one that translates a status (and its field trailer) back.
"""

from __future__ import annotations

import grpc


class QuartetError(Exception):
    """Base class: a failure with a precise gRPC status code and an HTTP status."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(QuartetError):
    """The request itself is wrong; ``field`` names the offending field."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(QuartetError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class FailedPrecondition(QuartetError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class ResourceExhausted(QuartetError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(QuartetError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class Aborted(Unavailable):
    """A service ended the request on its own (Abort was called, or it is stopping).

    A retry may well succeed, so it is a 503 like Unavailable; ``code`` tells OpenAI
    clients it was this and not a service that was down.
    """

    code = "aborted"


class DeadlineExceeded(QuartetError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class Unimplemented(QuartetError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


class Internal(QuartetError):
    """A failure nobody could have avoided by changing the request."""


def require(condition: bool, message: str, *, field: str | None = None) -> None:
    """Raise InvalidArgument(message) unless condition holds."""
    if not condition:
        raise InvalidArgument(message, field=field)
