"""Choose the storage backend from settings: SQLite unless DATABASE_URL names PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from quartet.services.common.errors import FailedPrecondition
from quartet.services.memory.sqlite_store import SqliteStore
from quartet.services.memory.store import Store


def is_postgres_url(database_url: str) -> bool:
    scheme = urlsplit(database_url).scheme.lower()
    return scheme in ("postgresql", "postgres")


def sqlite_path(database_url: str, default_path: Path) -> Path:
    """The SQLite file a DATABASE_URL names (``sqlite:///relative`` or ``sqlite:////absolute``)."""
    if not database_url:
        return default_path
    scheme = urlsplit(database_url).scheme.lower()
    if scheme != "sqlite":
        raise FailedPrecondition(
            f"DATABASE_URL has scheme {scheme or '(none)'!r}; the memory service understands "
            "sqlite:///PATH and postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    path = database_url[len("sqlite:///"):] if database_url.startswith("sqlite:///") else ""
    if not path:
        raise FailedPrecondition("DATABASE_URL must look like sqlite:///path/to/memory.sqlite3")
    return Path(path)


async def open_store(database_url: str, default_path: Path) -> Store:
    if is_postgres_url(database_url):
        # Imported here so a SQLite-only deployment never needs psycopg.
        from quartet.services.memory.pg_store import PostgresStore

        return await PostgresStore.open(database_url)
    return await SqliteStore.open(sqlite_path(database_url, default_path))
