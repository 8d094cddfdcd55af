"""Router settings, read once from the environment by ``python -m quartet.services.router``."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from quartet.services.common.settings import (
    DEFAULT_ENGINE_ADDRESS,
    DEFAULT_MEMORY_ADDRESS,
    DEFAULT_ROUTER_ADDRESS,
    ServiceSettings,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def _env(name: str, env: str) -> AliasChoices:
    """Accept the field name (for code and tests) and its environment variable."""
    return AliasChoices(name, env)


class RouterSettings(ServiceSettings):
    """Environment: ROUTER_LISTEN, ENGINE_ADDRESS, MEMORY_ADDRESS, AGENTS_FILE, PROMPTS_DIR, SCHEMAS_DIR, GRAMMARS_DIR."""

    listen: str = Field(DEFAULT_ROUTER_ADDRESS, validation_alias=_env("listen", "ROUTER_LISTEN"))
    engine_address: str = Field(DEFAULT_ENGINE_ADDRESS, validation_alias=_env("engine_address", "ENGINE_ADDRESS"))
    memory_address: str = Field(DEFAULT_MEMORY_ADDRESS, validation_alias=_env("memory_address", "MEMORY_ADDRESS"))
    agents_file: Path = Field(REPO_ROOT / "agents.yaml", validation_alias=_env("agents_file", "AGENTS_FILE"))
    # The whitelist folders prompt and schema ids resolve in; an operator's choice, never a client's.
    prompts_dir: Path = Field(REPO_ROOT / "prompts", validation_alias=_env("prompts_dir", "PROMPTS_DIR"))
    schemas_dir: Path = Field(REPO_ROOT / "schemas", validation_alias=_env("schemas_dir", "SCHEMAS_DIR"))
    grammars_dir: Path = Field(REPO_ROOT / "grammars", validation_alias=_env("grammars_dir", "GRAMMARS_DIR"))
    max_input_chars: int = Field(16_000, ge=1, validation_alias=_env("max_input_chars", "ROUTER_MAX_INPUT_CHARS"))
    # Deadlines of the router's calls: one whole generation, and every other (unary) call.
    engine_timeout_seconds: float = Field(
        600.0, gt=0, validation_alias=_env("engine_timeout_seconds", "ROUTER_ENGINE_TIMEOUT_SECONDS")
    )
    rpc_timeout_seconds: float = Field(30.0, gt=0, validation_alias=_env("rpc_timeout_seconds", "ROUTER_RPC_TIMEOUT_SECONDS"))
