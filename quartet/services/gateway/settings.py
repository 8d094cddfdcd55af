"""The gateway's settings, read once from the environment at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from quartet.services.common.settings import (
    DEFAULT_ENGINE_ADDRESS,
    DEFAULT_MEMORY_ADDRESS,
    DEFAULT_ROUTER_ADDRESS,
    ServiceSettings,
)


class GatewaySettings(ServiceSettings):
    """Where the gateway listens and where it finds the other services.

    An empty ``router_address`` or ``memory_address`` disables that service
    (``/healthz`` reports it as "disabled"). Environment variables carry the
    upper-case field names: HOST, PORT, ENGINE_ADDRESS, ... List settings
    (API_KEYS, CORS_ORIGINS) are comma-separated.
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
    #: Largest max_tokens a client may ask for (400 past it); also the limit when a client sets none.
    max_tokens_cap: int | None = Field(default=None, ge=1)

    #: Fernet key(s) for encrypted payloads, comma-separated; the first seals answers, all open requests.
    encryption_key: SecretStr | None = None
    #: Oldest accepted encrypted request, in seconds (unset: tokens never expire).
    encryption_ttl_seconds: int | None = Field(default=None, gt=0)
    #: Refuse plaintext request bodies once a key is set.
    require_encryption: bool = False

    #: Bearer keys that may call the API; empty (and no file) means no authentication.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: A file of API keys, one per line ("#" starts a comment), read at startup.
    api_keys_file: Path | None = None
    #: Requests per minute allowed to each key (or each client address without keys); 0 is no limit.
    rate_limit_per_minute: float = Field(default=0, ge=0)
    #: Requests a key may send at once after a quiet spell (the bucket size); unset is one minute's worth.
    rate_limit_burst: int | None = Field(default=None, ge=1)
    #: /metrics asks for an API key too (when keys are set); off, it is open like /healthz.
    metrics_require_key: bool = False

    #: Origins allowed by CORS ("*" for any); empty turns CORS off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    #: Most prompts, and most tokens per prompt, one /bench run may ask for.
    bench_max_count: int = Field(default=16, ge=1)
    bench_max_tokens: int = Field(default=256, ge=1)

    #: Socket.IO backpressure: agent events buffered per run between the router stream and the
    #: socket, and token events sent but not yet acknowledged by the client. A client that reads
    #: slowly fills both, and then the gateway stops reading from the router.
    socketio_queue_size: int = Field(default=32, ge=1)
    socketio_window: int = Field(default=16, ge=1)
    #: A run whose client acknowledges nothing for this long is stopped.
    socketio_ack_timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def all_api_keys(self) -> list[str]:
        """The keys from API_KEYS and API_KEYS_FILE together."""
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_keys_file is not None:
            for line in self.api_keys_file.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    keys.append(line)
        return keys

    def encryption_keys(self) -> list[str]:
        if self.encryption_key is None:
            return []
        return [key.strip() for key in self.encryption_key.get_secret_value().split(",") if key.strip()]
