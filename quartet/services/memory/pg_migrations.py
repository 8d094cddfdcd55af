"""Numbered schema migrations for the PostgreSQL store: the SQLite steps of
quartet/services/memory/migrations.py, by the same numbers, in PostgreSQL's dialect.

Append new steps; never edit or renumber one that has shipped.
"""

from __future__ import annotations

from quartet.services.memory.migrations import LATEST_VERSION as SQLITE_LATEST

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE turns (
            id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id TEXT             NOT NULL,
            topic_id   TEXT             NOT NULL DEFAULT '',
            role       TEXT             NOT NULL,
            content    TEXT             NOT NULL,
            num_tokens INTEGER          NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX turns_by_session ON turns (session_id, id);
        CREATE INDEX turns_by_topic ON turns (topic_id, id);
        """,
    ),
    (
        2,
        """
        CREATE TABLE responses (
            response_id          TEXT PRIMARY KEY,
            previous_response_id TEXT NOT NULL DEFAULT '',
            body_json            TEXT NOT NULL,
            created_at           DOUBLE PRECISION NOT NULL
        );
        """,
    ),
    (
        3,
        """
        ALTER TABLE turns ADD COLUMN embedding BYTEA;
        CREATE TABLE summaries (
            topic_id        TEXT             PRIMARY KEY,
            content         TEXT             NOT NULL,
            num_tokens      INTEGER          NOT NULL,
            through_turn_id BIGINT           NOT NULL,
            created_at      DOUBLE PRECISION NOT NULL
        );
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1][0]
# Both backends describe one schema: a step added to one and not the other is a bug.
assert LATEST_VERSION == SQLITE_LATEST, "quartet/services/memory/migrations.py and pg_migrations.py must have the same steps"
