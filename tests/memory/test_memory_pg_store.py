"""The PostgreSQL store below the core: migrations, version checks, durability of a commit."""

from __future__ import annotations

import psycopg
import pytest

from quartet.services.common.errors import FailedPrecondition
from quartet.services.memory.pg_migrations import LATEST_VERSION
from quartet.services.memory.pg_store import PostgresStore, redact
from quartet.services.memory.turns import Turn


async def test_migrations_run_once_and_are_recorded(pg_server):
    url = pg_server.new_database()
    store = await PostgresStore.open(url)
    await store.append("s", "t", [Turn("user", "kept", 2)], created_at=1.0)
    await store.close()
    store = await PostgresStore.open(url)  # reopening must not re-run migration 1 (it would fail: table exists)
    try:
        assert [(t.content, t.num_tokens) for t in await store.recent_in_session("s", 5)] == [("kept", 2)]
    finally:
        await store.close()
    with psycopg.connect(url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        # The write was committed by the store, so a fresh connection sees it.
        assert conn.execute("SELECT content FROM turns").fetchall() == [("kept",)]
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    assert versions == list(range(1, LATEST_VERSION + 1))


async def test_newer_schema_is_refused(pg_server):
    url = pg_server.new_database()
    await (await PostgresStore.open(url)).close()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, 0)", (LATEST_VERSION + 1,))
    with pytest.raises(FailedPrecondition, match="newer than this service"):
        await PostgresStore.open(url)


def test_redact_hides_the_password():
    assert redact("postgresql://me:secret@db.local:5433/quartet") == "postgresql://me@db.local:5433/quartet"
    assert "secret" not in redact("postgresql://me:secret@h/db?sslmode=require")
