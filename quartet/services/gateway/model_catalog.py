"""Which models the gateway serves: the engine's, asked through GetModelInfo and cached briefly,
and the router's topic agents as ``agent/<name>`` (when a router is configured and up).

The cache keeps a chat request from costing an extra RPC; a miss asks again
before answering 404, so a model swapped in the engine is found at once. The
Models routes always ask the engine, so they never describe an engine that is gone.
"""

from __future__ import annotations

import logging
import time

from quartet.services.common.errors import QuartetError
from quartet.services.common.engine_client import EngineClient
from quartet.services.gateway.errors import ModelNotFound
from quartet.services.gateway.router_client import RouterClient
from quartet.services.gateway.schemas.models import ModelCard

log = logging.getLogger(__name__)


class ModelCatalog:
    def __init__(self, engine: EngineClient, *, cache_seconds: float, router: RouterClient | None = None) -> None:
        self._engine = engine
        self._router = router
        self._cache_seconds = cache_seconds
        self._cards: list[ModelCard] = []
        self._fetched_at = float("-inf")
        # When each id was first seen: the engine has no creation date, and "created" must not drift.
        self._first_seen: dict[str, int] = {}
        # Model family by id (engine models only): how the model writes tool calls (tool_plan.py).
        self._architectures: dict[str, str] = {}

    async def refresh(self) -> list[ModelCard]:
        info = await self._engine.model_info()
        created = self._first_seen.setdefault(info.model_id, int(time.time()))
        cards = [ModelCard(id=info.model_id, created=created)]
        self._architectures = {info.model_id: info.architecture}
        if self._router is not None and self._router.enabled:
            try:
                agents = await self._router.agents(fresh=True)
            except QuartetError as error:
                # The engine's models stay usable while the router is down; its agents just vanish.
                log.info("agents unavailable", extra={"error": error.message})
                agents = []
            for agent in agents:
                if agent.kind == "topic":  # the router agent answers Route, not chat
                    seen = self._first_seen.setdefault(agent.model_id, int(time.time()))
                    cards.append(ModelCard(id=agent.model_id, created=seen, owned_by="quartet-router"))
        self._cards = cards
        self._fetched_at = time.monotonic()
        return self._cards

    async def list(self, *, fresh: bool = False) -> list[ModelCard]:
        """The served models; ``fresh`` asks the engine now (so a down engine is a 503)."""
        if fresh or time.monotonic() - self._fetched_at > self._cache_seconds:
            return await self.refresh()
        return self._cards

    def architecture(self, model_id: str) -> str:
        """The engine's model family of ``model_id`` (e.g. llama, gpt_oss) as last seen; "" if unknown."""
        return self._architectures.get(model_id, "")

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
