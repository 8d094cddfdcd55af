"""Choose the storage backend from settings: SQLite unless DATABASE_URL says otherwise."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from services.common.errors import FailedPrecondition, Unimplemented
from services.memory.sqlite_store import SqliteStore
from services.memory.store import Store


def sqlite_path(database_url: str, default_path: Path) -> Path:
    """The SQLite file a DATABASE_URL names (``sqlite:///relative`` or ``sqlite:////absolute``)."""
    if not database_url:
        return default_path
    scheme = urlsplit(database_url).scheme.lower()
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise Unimplemented(
            "PostgreSQL support is not built yet; unset DATABASE_URL to use the embedded SQLite "
            f"database at {default_path} (or set MEMORY_DB_PATH)"
        )
    if scheme != "sqlite":
        raise FailedPrecondition(
            f"DATABASE_URL has scheme {scheme or '(none)'!r}; the memory service understands sqlite:///PATH only"
        )
    path = database_url[len("sqlite:///"):] if database_url.startswith("sqlite:///") else ""
    if not path:
        raise FailedPrecondition("DATABASE_URL must look like sqlite:///path/to/memory.sqlite3")
    return Path(path)


async def open_store(database_url: str, default_path: Path) -> Store:
    return await SqliteStore.open(sqlite_path(database_url, default_path))
