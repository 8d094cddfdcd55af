"""The gateway's settings, read once from the environment at the entry point."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import (
    DEFAULT_ENGINE_ADDRESS,
    DEFAULT_MEMORY_ADDRESS,
    DEFAULT_ROUTER_ADDRESS,
    ServiceSettings,
)


class GatewaySettings(ServiceSettings):
    """Where the gateway listens and where it finds the other services.

    An empty ``router_address`` or ``memory_address`` disables that service
    (``/healthz`` reports it as "disabled"). Environment variables carry the
    upper-case field names: HOST, PORT, ENGINE_ADDRESS, ...
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    engine_address: str = Field(default=DEFAULT_ENGINE_ADDRESS, min_length=1)
    router_address: str = DEFAULT_ROUTER_ADDRESS
    memory_address: str = DEFAULT_MEMORY_ADDRESS
    #: Deadline for one whole generation; past it the engine call is cancelled (504).
    request_timeout_seconds: float = Field(default=600.0, gt=0)
    #: How long a unary engine call (model info) may take before the engine counts as down.
    rpc_timeout_seconds: float = Field(default=5.0, gt=0)
    #: Longest a connection attempt may take: a down service must fail fast, not hang.
    connect_timeout_seconds: float = Field(default=1.0, gt=0)
    #: Per-service budget of one /healthz probe.
    health_timeout_seconds: float = Field(default=1.0, gt=0)
    #: Largest accepted request body; bigger ones are refused with 413 before parsing.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    #: How long the list of served models is trusted before asking the engine again.
    models_cache_seconds: float = Field(default=10.0, ge=0)
