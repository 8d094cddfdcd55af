"""Retrieval: embed turns as they arrive, and find the past turns most similar to a query.

Embedding is CPU work (a few tens of milliseconds a turn), so it runs on its own
worker thread and never blocks the event loop or the store's thread. Turns stored
while embeddings were off (no embedder installed) are embedded on first search.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from quartet.services.common.errors import FailedPrecondition
from quartet.services.memory.embedder import INSTALL_HINT, Embedder
from quartet.services.memory.store import Scope, Store
from quartet.services.memory.turns import SearchHit, Turn
from quartet.services.memory.vectors import MAX_SCANNED, to_bytes, top_k

log = logging.getLogger(__name__)

#: Most turns a search embeds late (stored before embeddings were on); the rest wait for later searches.
BACKFILL_LIMIT = 256


class Retriever:
    """Embeds with ``embedder`` (None: retrieval off, search is FAILED_PRECONDITION)."""

    def __init__(self, store: Store, embedder: Embedder | None) -> None:
        self.store = store
        self.embedder = embedder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") if embedder else None

    @property
    def is_enabled(self) -> bool:
        return self.embedder is not None

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        assert self.embedder is not None and self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.embedder.embed, list(texts))

    async def embeddings_for(self, turns: Sequence[Turn]) -> list[bytes | None] | None:
        """Embedding bytes to store with new turns; None when retrieval is off."""
        if self.embedder is None:
            return None
        return [to_bytes(v) for v in await self._embed([t.content for t in turns])]

    async def search(self, query: str, scope: Scope, scope_id: str, k: int) -> list[SearchHit]:
        if self.embedder is None:
            raise FailedPrecondition(f"retrieval is off in this memory service (no embedding model); {INSTALL_HINT}")
        missing = await self.store.unembedded(scope, scope_id, BACKFILL_LIMIT)
        if missing:
            vectors = await self._embed([t.content for t in missing])
            await self.store.set_embeddings([(t.turn_id, to_bytes(v)) for t, v in zip(missing, vectors, strict=True)])
            log.info("embedded older turns", extra={"scope": scope, "num_turns": len(missing)})
        candidates = await self.store.embedded(scope, scope_id, MAX_SCANNED)
        (query_vector,) = await self._embed([query])
        return top_k(query_vector, candidates, k)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
