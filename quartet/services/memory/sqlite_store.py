"""The SQLite store: one database file in WAL mode, driven from one worker thread.

WAL lets readers proceed while a turn is written; ``synchronous=FULL`` makes
every commit reach the disk before AppendTurns returns (https://sqlite.org/wal.html,
"Durability"). All statements run on a single dedicated thread, so the one
connection is never shared between threads and the event loop never blocks on I/O.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from quartet.services.common.errors import FailedPrecondition
from quartet.services.memory.migrations import LATEST_VERSION, MIGRATIONS
from quartet.services.memory.responses import ResponseRecord
from quartet.services.memory.store import Scope, Store
from quartet.services.memory.turns import Summary, TopicInfo, Turn

log = logging.getLogger(__name__)
T = TypeVar("T")

_TURN_COLUMNS = "role, content, num_tokens, created_at, id"
_SCOPE_COLUMNS = {"session": "session_id", "topic": "topic_id"}


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each write is one explicit transaction.
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        conn.close()
        raise FailedPrecondition(f"SQLite at {path} refused WAL mode (got {mode!r}); put the database on a local disk")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the migrations this database has not run yet; return its version afterwards."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    if current > LATEST_VERSION:
        raise FailedPrecondition(
            f"database {path} has schema version {current}, newer than this service knows "
            f"({LATEST_VERSION}); run a newer memory service or point MEMORY_DB_PATH elsewhere"
        )
    for version, sql in MIGRATIONS:
        if version <= current:
            continue
        try:
            # executescript runs the DDL and the version row in one transaction, so a failed
            # step leaves the database at the previous version rather than half-migrated.
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_version (version, applied_at) VALUES ({version}, {time.time()});\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("applied migration", extra={"schema_version": version, "db_path": str(path)})
        current = version
    return current


def _turn(row: tuple) -> Turn:
    return Turn(role=row[0], content=row[1], num_tokens=row[2], created_at=row[3], turn_id=row[4])


class SqliteStore(Store):
    """Use ``await SqliteStore.open(path)``; the constructor only wires parts together."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, path: Path) -> None:
        self._conn = conn
        self._executor = executor
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, path)
            version = await loop.run_in_executor(executor, _migrate, conn, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        log.info("opened sqlite store", extra={"db_path": str(path), "schema_version": version})
        return cls(conn, executor, path)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def append(
        self,
        session_id: str,
        topic_id: str,
        turns: Sequence[Turn],
        created_at: float,
        embeddings: Sequence[bytes | None] | None = None,
    ) -> int:
        vectors = list(embeddings) if embeddings is not None else [None] * len(turns)
        rows = [(session_id, topic_id, t.role, t.content, t.num_tokens, created_at, v) for t, v in zip(turns, vectors, strict=True)]
        return await self._run(self._append, session_id, topic_id, rows)

    def _append(self, session_id: str, topic_id: str, rows: list[tuple]) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO turns (session_id, topic_id, role, content, num_tokens, created_at, embedding)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            count = conn.execute(
                "SELECT COUNT(*) FROM turns WHERE session_id = ? AND (? = '' OR topic_id = ?)",
                (session_id, topic_id, topic_id),
            ).fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return count

    async def recent_in_session(self, session_id: str, limit: int) -> list[Turn]:
        return await self._run(self._recent, "session_id", session_id, limit)

    async def recent_in_topic(self, topic_id: str, limit: int) -> list[Turn]:
        return await self._run(self._recent, "topic_id", topic_id, limit)

    def _recent(self, column: str, value: str, limit: int) -> list[Turn]:
        # column is one of two literals chosen above, never caller text.
        rows = self._conn.execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE {column} = ? ORDER BY id DESC LIMIT ?", (value, limit)
        ).fetchall()
        return [_turn(row) for row in reversed(rows)]

    async def topic_turns_between(self, topic_id: str, after_id: int, before_id: int, limit: int) -> list[Turn]:
        return await self._run(self._between, topic_id, after_id, before_id, limit)

    def _between(self, topic_id: str, after_id: int, before_id: int, limit: int) -> list[Turn]:
        rows = self._conn.execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE topic_id = ? AND id > ? AND id < ? ORDER BY id LIMIT ?",
            (topic_id, after_id, before_id, limit),
        ).fetchall()
        return [_turn(row) for row in rows]

    async def get_summary(self, topic_id: str) -> Summary | None:
        return await self._run(self._get_summary, topic_id)

    def _get_summary(self, topic_id: str) -> Summary | None:
        row = self._conn.execute(
            "SELECT content, num_tokens, through_turn_id, created_at FROM summaries WHERE topic_id = ?", (topic_id,)
        ).fetchone()
        return Summary(*row) if row else None

    async def put_summary(self, topic_id: str, summary: Summary) -> tuple[bool, Summary]:
        return await self._run(self._put_summary, topic_id, summary)

    def _put_summary(self, topic_id: str, summary: Summary) -> tuple[bool, Summary]:
        # One statement: the upsert's WHERE makes "only if it covers more" atomic.
        cursor = self._conn.execute(
            "INSERT INTO summaries (topic_id, content, num_tokens, through_turn_id, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (topic_id) DO UPDATE SET content = excluded.content, num_tokens = excluded.num_tokens,"
            " through_turn_id = excluded.through_turn_id, created_at = excluded.created_at"
            " WHERE excluded.through_turn_id > summaries.through_turn_id",
            (topic_id, summary.content, summary.num_tokens, summary.through_turn_id, summary.created_at),
        )
        stored = cursor.rowcount > 0
        return stored, (summary if stored else self._get_summary(topic_id))

    async def embedded(self, scope: Scope, scope_id: str, limit: int) -> list[tuple[Turn, bytes]]:
        return await self._run(self._embedded, _SCOPE_COLUMNS[scope], scope_id, limit)

    def _embedded(self, column: str, scope_id: str, limit: int) -> list[tuple[Turn, bytes]]:
        rows = self._conn.execute(
            f"SELECT {_TURN_COLUMNS}, embedding FROM turns WHERE {column} = ? AND embedding IS NOT NULL ORDER BY id DESC LIMIT ?",
            (scope_id, limit),
        ).fetchall()
        return [(_turn(row), bytes(row[5])) for row in rows]

    async def unembedded(self, scope: Scope, scope_id: str, limit: int) -> list[Turn]:
        return await self._run(self._unembedded, _SCOPE_COLUMNS[scope], scope_id, limit)

    def _unembedded(self, column: str, scope_id: str, limit: int) -> list[Turn]:
        rows = self._conn.execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE {column} = ? AND embedding IS NULL ORDER BY id DESC LIMIT ?",
            (scope_id, limit),
        ).fetchall()
        return [_turn(row) for row in rows]

    async def set_embeddings(self, pairs: Sequence[tuple[int, bytes]]) -> None:
        await self._run(self._set_embeddings, [(blob, turn_id) for turn_id, blob in pairs])

    def _set_embeddings(self, rows: list[tuple[bytes, int]]) -> None:
        with self._transaction():
            self._conn.executemany("UPDATE turns SET embedding = ? WHERE id = ?", rows)

    async def list_topics(self, session_id: str) -> list[TopicInfo]:
        return await self._run(self._list_topics, session_id)

    def _list_topics(self, session_id: str) -> list[TopicInfo]:
        rows = self._conn.execute(
            "SELECT topic_id, COUNT(*), MAX(created_at) FROM turns"
            " WHERE topic_id != '' AND (? = '' OR session_id = ?)"
            " GROUP BY topic_id ORDER BY MAX(id) DESC",
            (session_id, session_id),
        ).fetchall()
        return [TopicInfo(topic_id=r[0], num_turns=r[1], last_active_at=r[2]) for r in rows]

    async def forget(self, session_id: str, topic_id: str) -> int:
        return await self._run(self._forget, session_id, topic_id)

    def _forget(self, session_id: str, topic_id: str) -> int:
        if session_id and topic_id:
            where, args = "session_id = ? AND topic_id = ?", (session_id, topic_id)
        elif session_id:
            where, args = "session_id = ?", (session_id,)
        else:
            where, args = "topic_id = ?", (topic_id,)
        with self._transaction():
            self._conn.execute(
                f"DELETE FROM summaries WHERE topic_id IN (SELECT DISTINCT topic_id FROM turns WHERE {where})", args
            )
            if topic_id and not session_id:
                self._conn.execute("DELETE FROM summaries WHERE topic_id = ?", (topic_id,))
            return self._conn.execute(f"DELETE FROM turns WHERE {where}", args).rowcount

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    async def put_response(self, record: ResponseRecord, created_at: float) -> None:
        row = (record.response_id, record.previous_response_id, record.body_json, created_at)
        await self._run(self._put_response, row)

    def _put_response(self, row: tuple) -> None:
        # Autocommit mode: the one statement is its own transaction, on disk when it returns (synchronous=FULL).
        self._conn.execute(
            "INSERT OR REPLACE INTO responses (response_id, previous_response_id, body_json, created_at) VALUES (?, ?, ?, ?)",
            row,
        )

    async def get_response(self, response_id: str) -> ResponseRecord | None:
        return await self._run(self._get_response, response_id)

    def _get_response(self, response_id: str) -> ResponseRecord | None:
        row = self._conn.execute(
            "SELECT response_id, previous_response_id, body_json, created_at FROM responses WHERE response_id = ?",
            (response_id,),
        ).fetchone()
        return ResponseRecord(*row) if row else None

    async def delete_response(self, response_id: str) -> bool:
        return await self._run(self._delete_response, response_id)

    def _delete_response(self, response_id: str) -> bool:
        return self._conn.execute("DELETE FROM responses WHERE response_id = ?", (response_id,)).rowcount > 0

    async def close(self) -> None:
        await self._run(self._conn.close)
        self._executor.shutdown(wait=True)
        log.info("closed sqlite store", extra={"db_path": str(self.path)})
