"""The PostgreSQL store, chosen by ``DATABASE_URL=postgresql://...``: the same schema and
behaviour as the SQLite store, through psycopg 3 and a small connection pool.

Every write is one transaction committed before the call returns, and PostgreSQL's
default ``synchronous_commit=on`` flushes it to the WAL on disk first, so an
acknowledged turn survives a crash as it does on SQLite. Migrations run under an
advisory lock, so replicas that start together never apply a step twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from quartet.services.common.errors import FailedPrecondition, Unavailable
from quartet.services.memory.pg_migrations import LATEST_VERSION, MIGRATIONS
from quartet.services.memory.responses import ResponseRecord
from quartet.services.memory.store import Scope, Store
from quartet.services.memory.turns import Summary, TopicInfo, Turn

log = logging.getLogger(__name__)

_TURN_COLUMNS = "role, content, num_tokens, created_at, id"
_SCOPE_COLUMNS = {"session": "session_id", "topic": "topic_id"}
# pg_advisory_xact_lock key for migrations: any constant the application owns ("quartet-memory").
_MIGRATION_LOCK = 0x71_6D_65_6D
OPEN_TIMEOUT_SECONDS = 10.0


def _turn(row: tuple) -> Turn:
    return Turn(role=row[0], content=row[1], num_tokens=row[2], created_at=row[3], turn_id=row[4])


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable DATABASE_URL)"
    return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"


async def _migrate(conn: psycopg.AsyncConnection, where: str) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = (await (await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")).fetchone())[0]
        if current > LATEST_VERSION:
            raise FailedPrecondition(
                f"database {where} has schema version {current}, newer than this service knows "
                f"({LATEST_VERSION}); run a newer memory service or point DATABASE_URL elsewhere"
            )
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            await conn.execute(sql)  # no parameters: several statements may run in one call
            await conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)", (version, time.time()))
            log.info("applied migration", extra={"schema_version": version, "database": where})
            current = version
    return current


class PostgresStore(Store):
    """Use ``await PostgresStore.open(url)``; the constructor only wires parts together."""

    def __init__(self, pool: AsyncConnectionPool, where: str) -> None:
        self._pool = pool
        self.where = where

    @classmethod
    async def open(cls, url: str, max_connections: int = 8) -> PostgresStore:
        where = redact(url)
        # One direct connection first: its error says why (refused, bad password, no such
        # database), where the pool would only report a timeout.
        try:
            async with await psycopg.AsyncConnection.connect(url, connect_timeout=int(OPEN_TIMEOUT_SECONDS)) as conn:
                version = await _migrate(conn, where)
        except psycopg.OperationalError as error:
            reason = " ".join(str(error).split()) or type(error).__name__  # libpq's message never holds the password
            raise Unavailable(
                f"cannot connect to PostgreSQL at {where}: {reason}; check DATABASE_URL and that the server is running"
            ) from None
        pool = AsyncConnectionPool(url, min_size=1, max_size=max_connections, open=False, name="memory")
        try:
            await pool.open(wait=True, timeout=OPEN_TIMEOUT_SECONDS)
        except PoolTimeout:
            await pool.close()
            raise Unavailable(f"cannot open a connection pool to PostgreSQL at {where}; check the server") from None
        log.info("opened postgres store", extra={"database": where, "schema_version": version})
        return cls(pool, where)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection; a lost server becomes UNAVAILABLE rather than an internal error."""
        try:
            async with self._pool.connection(timeout=OPEN_TIMEOUT_SECONDS) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise Unavailable(f"PostgreSQL at {self.where} is unavailable ({type(error).__name__}); check the server") from None

    async def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        async with self._conn() as conn:
            return await (await conn.execute(sql, args)).fetchall()

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
        count_sql, count_args = "SELECT COUNT(*) FROM turns WHERE session_id = %s", (session_id,)
        if topic_id:
            count_sql, count_args = count_sql + " AND topic_id = %s", (session_id, topic_id)
        async with self._conn() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO turns (session_id, topic_id, role, content, num_tokens, created_at, embedding)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
            return (await (await conn.execute(count_sql, count_args)).fetchone())[0]

    async def recent_in_session(self, session_id: str, limit: int) -> list[Turn]:
        return await self._recent("session_id", session_id, limit)

    async def recent_in_topic(self, topic_id: str, limit: int) -> list[Turn]:
        return await self._recent("topic_id", topic_id, limit)

    async def _recent(self, column: str, value: str, limit: int) -> list[Turn]:
        # column is one of two literals chosen above, never caller text.
        rows = await self._all(f"SELECT {_TURN_COLUMNS} FROM turns WHERE {column} = %s ORDER BY id DESC LIMIT %s", (value, limit))
        return [_turn(row) for row in reversed(rows)]

    async def topic_turns_between(self, topic_id: str, after_id: int, before_id: int, limit: int) -> list[Turn]:
        rows = await self._all(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE topic_id = %s AND id > %s AND id < %s ORDER BY id LIMIT %s",
            (topic_id, after_id, before_id, limit),
        )
        return [_turn(row) for row in rows]

    async def get_summary(self, topic_id: str) -> Summary | None:
        rows = await self._all(
            "SELECT content, num_tokens, through_turn_id, created_at FROM summaries WHERE topic_id = %s", (topic_id,)
        )
        return Summary(*rows[0]) if rows else None

    async def put_summary(self, topic_id: str, summary: Summary) -> tuple[bool, Summary]:
        async with self._conn() as conn:
            cursor = await conn.execute(
                "INSERT INTO summaries (topic_id, content, num_tokens, through_turn_id, created_at) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (topic_id) DO UPDATE SET content = EXCLUDED.content, num_tokens = EXCLUDED.num_tokens,"
                " through_turn_id = EXCLUDED.through_turn_id, created_at = EXCLUDED.created_at"
                " WHERE EXCLUDED.through_turn_id > summaries.through_turn_id",
                (topic_id, summary.content, summary.num_tokens, summary.through_turn_id, summary.created_at),
            )
            stored = cursor.rowcount > 0
        if stored:
            return True, summary
        current = await self.get_summary(topic_id)
        assert current is not None  # the conflict that blocked the write is this row
        return False, current

    async def embedded(self, scope: Scope, scope_id: str, limit: int) -> list[tuple[Turn, bytes]]:
        rows = await self._all(
            f"SELECT {_TURN_COLUMNS}, embedding FROM turns WHERE {_SCOPE_COLUMNS[scope]} = %s AND embedding IS NOT NULL"
            " ORDER BY id DESC LIMIT %s",
            (scope_id, limit),
        )
        return [(_turn(row), bytes(row[5])) for row in rows]

    async def unembedded(self, scope: Scope, scope_id: str, limit: int) -> list[Turn]:
        rows = await self._all(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE {_SCOPE_COLUMNS[scope]} = %s AND embedding IS NULL ORDER BY id DESC LIMIT %s",
            (scope_id, limit),
        )
        return [_turn(row) for row in rows]

    async def set_embeddings(self, pairs: Sequence[tuple[int, bytes]]) -> None:
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany("UPDATE turns SET embedding = %s WHERE id = %s", [(blob, turn_id) for turn_id, blob in pairs])

    async def list_topics(self, session_id: str) -> list[TopicInfo]:
        where, args = ("topic_id <> '' AND session_id = %s", (session_id,)) if session_id else ("topic_id <> ''", ())
        rows = await self._all(
            f"SELECT topic_id, COUNT(*), MAX(created_at) FROM turns WHERE {where} GROUP BY topic_id ORDER BY MAX(id) DESC", args
        )
        return [TopicInfo(topic_id=r[0], num_turns=r[1], last_active_at=r[2]) for r in rows]

    async def forget(self, session_id: str, topic_id: str) -> int:
        if session_id and topic_id:
            where, args = "session_id = %s AND topic_id = %s", (session_id, topic_id)
        elif session_id:
            where, args = "session_id = %s", (session_id,)
        else:
            where, args = "topic_id = %s", (topic_id,)
        async with self._conn() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM summaries WHERE topic_id IN (SELECT DISTINCT topic_id FROM turns WHERE {where})", args)
            if topic_id and not session_id:
                await conn.execute("DELETE FROM summaries WHERE topic_id = %s", (topic_id,))
            return (await conn.execute(f"DELETE FROM turns WHERE {where}", args)).rowcount

    async def put_response(self, record: ResponseRecord, created_at: float) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO responses (response_id, previous_response_id, body_json, created_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (response_id) DO UPDATE SET previous_response_id = EXCLUDED.previous_response_id,"
                " body_json = EXCLUDED.body_json, created_at = EXCLUDED.created_at",
                (record.response_id, record.previous_response_id, record.body_json, created_at),
            )

    async def get_response(self, response_id: str) -> ResponseRecord | None:
        rows = await self._all(
            "SELECT response_id, previous_response_id, body_json, created_at FROM responses WHERE response_id = %s", (response_id,)
        )
        return ResponseRecord(*rows[0]) if rows else None

    async def delete_response(self, response_id: str) -> bool:
        async with self._conn() as conn:
            return (await conn.execute("DELETE FROM responses WHERE response_id = %s", (response_id,))).rowcount > 0

    async def close(self) -> None:
        await self._pool.close()
        log.info("closed postgres store", extra={"database": self.where})
