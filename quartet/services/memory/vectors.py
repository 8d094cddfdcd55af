"""Embedding vectors as stored bytes, and exact nearest-neighbour search over them.

Vectors are stored as little-endian float32 bytes (SQLite BLOB, PostgreSQL BYTEA).
Search is an exact cosine scan in numpy over one topic's (or session's) turns:
the Python sqlite3 module here cannot load extensions such as sqlite-vec, and
Debian's PostgreSQL 15 has no pgvector package, so one exact scan serves both
backends. A scope holds at most ``MAX_SCANNED`` vectors (the newest), which keeps
a search to a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from quartet.services.memory.turns import SearchHit, Turn

MAX_SCANNED = 20_000


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


def top_k(query: np.ndarray, candidates: Sequence[tuple[Turn, bytes]], k: int) -> list[SearchHit]:
    """The ``k`` candidates most similar to ``query`` (unit vectors: dot = cosine), best first.

    Candidates of another dimension (embedded by another model) are skipped.
    """
    usable = [(turn, blob) for turn, blob in candidates if len(blob) == query.size * 4]
    if not usable or k <= 0:
        return []
    matrix = np.stack([from_bytes(blob) for _, blob in usable])
    scores = matrix @ query.astype(np.float32)
    # Ties keep arrival order (newer first), so equal texts rank the latest one highest.
    order = sorted(range(len(usable)), key=lambda i: (-float(scores[i]), -usable[i][0].turn_id))[:k]
    return [SearchHit(turn=usable[i][0], score=float(scores[i])) for i in order]
