"""Which models the gateway serves: the engine's, asked through GetModelInfo and cached briefly.

The cache keeps a chat request from costing an extra RPC; a miss asks again
before answering 404, so a model swapped in the engine is found at once. The
Models routes always ask the engine, so they never describe an engine that is gone.
"""

from __future__ import annotations

import time

from services.gateway.clients import EngineClient
from services.gateway.errors import ModelNotFound
from services.gateway.schemas.models import ModelCard


class ModelCatalog:
    def __init__(self, engine: EngineClient, *, cache_seconds: float) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cards: list[ModelCard] = []
        self._fetched_at = float("-inf")
        # When each id was first seen: the engine has no creation date, and "created" must not drift.
        self._first_seen: dict[str, int] = {}

    async def refresh(self) -> list[ModelCard]:
        info = await self._engine.model_info()
        created = self._first_seen.setdefault(info.model_id, int(time.time()))
        self._cards = [ModelCard(id=info.model_id, created=created)]
        self._fetched_at = time.monotonic()
        return self._cards

    async def list(self, *, fresh: bool = False) -> list[ModelCard]:
        """The served models; ``fresh`` asks the engine now (so a down engine is a 503)."""
        if fresh or time.monotonic() - self._fetched_at > self._cache_seconds:
            return await self.refresh()
        return self._cards

    async def get(self, model_id: str, *, fresh: bool = False) -> ModelCard:
        """The card of ``model_id``, or ModelNotFound listing what is served."""
        for card in await self.list(fresh=fresh):
            if card.id == model_id:
                return card
        cards = await self.refresh()
        for card in cards:
            if card.id == model_id:
                return card
        available = ", ".join(card.id for card in cards) or "none"
        raise ModelNotFound(
            f"the model '{model_id}' does not exist; available models: {available}", field="model"
        )
