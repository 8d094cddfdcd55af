"""Numbered schema migrations for the SQLite store, applied in order at startup.

quartet/services/memory/pg_migrations.py holds the same steps, by the same numbers, for PostgreSQL.

Append new steps; never edit or renumber one that has shipped, because
databases in the field record which numbers they already ran.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE turns (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT    NOT NULL,
            topic_id   TEXT    NOT NULL DEFAULT '',
            role       TEXT    NOT NULL,
            content    TEXT    NOT NULL,
            num_tokens INTEGER NOT NULL DEFAULT 0,
            created_at REAL    NOT NULL
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
            created_at           REAL NOT NULL
        );
        """,
    ),
    (
        3,
        """
        ALTER TABLE turns ADD COLUMN embedding BLOB;
        CREATE TABLE summaries (
            topic_id        TEXT    PRIMARY KEY,
            content         TEXT    NOT NULL,
            num_tokens      INTEGER NOT NULL,
            through_turn_id INTEGER NOT NULL,
            created_at      REAL    NOT NULL
        );
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1][0]
