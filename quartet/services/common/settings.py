"""Settings shared by every service, read once from the environment at each entry point."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ENGINE_ADDRESS = "127.0.0.1:50051"
DEFAULT_MEMORY_ADDRESS = "127.0.0.1:50052"
DEFAULT_ROUTER_ADDRESS = "127.0.0.1:50053"


class ServiceSettings(BaseSettings):
    """Base: each service subclasses it and adds its own fields.

    ``listen`` is where a gRPC server binds; the ``*_address`` fields are
    where clients find the other services.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: str = "INFO"
    shutdown_grace_seconds: float = 5.0
