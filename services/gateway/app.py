"""The gateway's FastAPI app: ``create_app(settings, clients=None)``.

The app owns its gRPC clients when it builds them (opened in ``lifespan``, on
the server's event loop, and closed at shutdown); clients passed in belong to
the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway.clients import Clients
from services.gateway.errors import install_error_handlers
from services.gateway.model_catalog import ModelCatalog
from services.gateway.routes import chat, health, models
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState


def create_app(settings: GatewaySettings | None = None, clients: Clients | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = clients is None
        live = Clients.from_settings(settings) if owned else clients
        catalog = ModelCatalog(live.engine, cache_seconds=settings.models_cache_seconds)
        app.state.gateway = GatewayState(settings=settings, clients=live, catalog=catalog)
        try:
            yield
        finally:
            if owned:
                await live.close()

    app = FastAPI(title="Quartet gateway", summary="OpenAI-compatible HTTP API", lifespan=lifespan)
    install_error_handlers(app)
    for module in (chat, models, health):
        app.include_router(module.router)
    return app
