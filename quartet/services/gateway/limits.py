"""The one limits layer of the gateway: who may call, how often, and how much they may ask for.

Every entry goes through these functions, so a limit holds the same way everywhere: the HTTP
routes (``guard``, a FastAPI dependency, and the body schemas' bounds), and the Socket.IO
events (``agent_socket``: ``caller_of`` at connect, ``take_rate_token`` on every ``run``,
``resolve_max_tokens`` on its ``max_tokens``). The router's gRPC calls come only through those two.
"""

from __future__ import annotations

import math

from fastapi import Request

from quartet.services.gateway.errors import BadRequest, RateLimited
from quartet.services.gateway.state import GatewayState


def caller_of(state: GatewayState, authorization: str | None, client_host: str | None) -> str:
    """Who is calling: a digest of the API key (Unauthorized without a valid one, when keys are
    configured), else the client's address."""
    if state.api_keys.enabled:
        return state.api_keys.caller(authorization)
    return "addr:" + (client_host or "unknown")


def take_rate_token(state: GatewayState, caller: str) -> None:
    """One request's worth of ``caller``'s rate limit, or RateLimited with the Retry-After."""
    limiter = state.rate_limiter
    if limiter is None:
        return
    wait = limiter.acquire(caller)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(
            f"rate limit reached ({limiter.rate * 60:g} requests per minute); retry in {retry_after} s",
            retry_after=retry_after,
        )


def authenticate(request: Request) -> str:
    """``caller_of`` an HTTP request (no rate limit taken: /metrics uses it alone)."""
    return caller_of(
        request.app.state.gateway, request.headers.get("authorization"), request.client.host if request.client else None
    )


async def guard(request: Request) -> None:
    """FastAPI dependency of every API route: authenticate, then take one of the caller's rate-limit tokens."""
    take_rate_token(request.app.state.gateway, authenticate(request))


def resolve_max_tokens(requested: int | None, *, field: str, cap: int | None, default: int | None = None) -> int | None:
    """The limit to send to the engine: the client's, else ``default``, never past ``cap``.

    A client asking for more than the cap gets a 400 naming ``field`` rather
    than a silently shorter answer; one asking for nothing gets the cap.
    """
    if requested is not None and cap is not None and requested > cap:
        raise BadRequest(
            f"{field} is {requested}, more than this server allows ({cap}); ask for at most {cap}",
            field=field,
            code="invalid_value",
        )
    value = requested if requested is not None else default
    if cap is None:
        return value
    return cap if value is None else min(value, cap)
