"""Failures of the engine and memory services, as typed errors the router re-raises.

A downstream status keeps its meaning upstream (RESOURCE_EXHAUSTED stays 429 at
the gateway); the message says which service failed and what to check.
"""

from __future__ import annotations

import grpc

from quartet.services.common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuartetError,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)

_BY_CODE: dict[grpc.StatusCode, type[QuartetError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def upstream_error(service: str, address: str, code: grpc.StatusCode, details: str) -> QuartetError:
    """The typed error for a ``service`` call that ended with ``code``."""
    if code is grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"the {service} service at {address} is unavailable ({details}); check that it is running")
    kind = _BY_CODE.get(code, QuartetError)
    return kind(f"{service}: {details or code.name}")


def from_rpc_error(service: str, address: str, error: grpc.aio.AioRpcError) -> QuartetError:
    return upstream_error(service, address, error.code(), error.details() or "")


def from_code_name(service: str, address: str, code_name: str, message: str) -> QuartetError:
    """For errors the engine reports inside a stream (engine.v1.Error carries a code name)."""
    code = grpc.StatusCode.__members__.get(code_name.upper(), grpc.StatusCode.INTERNAL)
    return upstream_error(service, address, code, message)
