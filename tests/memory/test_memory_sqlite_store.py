"""The SQLite store below the core: pragmas, migrations, version checks."""

from __future__ import annotations

import sqlite3

import pytest

from quartet.services.common.errors import FailedPrecondition
from quartet.services.memory.backends import is_postgres_url, sqlite_path
from quartet.services.memory.migrations import LATEST_VERSION
from quartet.services.memory.sqlite_store import SqliteStore
from quartet.services.memory.turns import Turn


async def test_wal_and_full_sync(tmp_path):
    store = await SqliteStore.open(tmp_path / "m.db")
    try:
        assert await store._run(lambda: store._conn.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        assert await store._run(lambda: store._conn.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    finally:
        await store.close()


async def test_migrations_run_once_and_are_recorded(tmp_path):
    path = tmp_path / "nested" / "m.db"  # the folder is created on demand
    store = await SqliteStore.open(path)
    await store.append("s", "", [Turn("user", "kept")], created_at=1.0)
    await store.close()
    store = await SqliteStore.open(path)  # reopening must not re-run migration 1 (it would fail: table exists)
    assert [t.content for t in await store.recent_in_session("s", 5)] == ["kept"]
    await store.close()
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, LATEST_VERSION + 1))


async def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "m.db"
    await (await SqliteStore.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (LATEST_VERSION + 1,))
    with pytest.raises(FailedPrecondition, match="newer than this service"):
        await SqliteStore.open(path)


def test_database_url_forms(tmp_path):
    default = tmp_path / "default.db"
    assert sqlite_path("", default) == default
    assert sqlite_path("sqlite:///rel/m.db", default).as_posix() == "rel/m.db"
    assert sqlite_path("sqlite:////abs/m.db", default).as_posix() == "/abs/m.db"
    for url in ("postgresql://u@h/db", "postgres://h/db"):
        assert is_postgres_url(url)
    assert not is_postgres_url("sqlite:///m.db")
    with pytest.raises(FailedPrecondition, match="scheme 'mysql'"):
        sqlite_path("mysql://h/db", default)
    with pytest.raises(FailedPrecondition, match="sqlite:///"):
        sqlite_path("sqlite://", default)
