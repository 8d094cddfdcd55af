"""The gateway's FastAPI app: ``create_app(settings, clients=None)``.

The app owns its gRPC clients when it builds them (opened in ``lifespan``, on
the server's event loop, and closed at shutdown); clients passed in belong to
the caller. Keys, the Fernet envelope, the rate limiter and the metrics are
built here, once, from the settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from quartet.services.gateway.auth import ApiKeys
from quartet.services.gateway.clients import Clients
from quartet.services.gateway.errors import install_error_handlers
from quartet.services.gateway.fernet import Envelope
from quartet.services.gateway.metrics import GatewayMetrics, MetricsMiddleware
from quartet.services.gateway.model_catalog import ModelCatalog
from quartet.services.gateway.openapi import install_openapi
from quartet.services.gateway.rate_limit import RateLimiter
from quartet.services.gateway.response_store import MemoryResponseStore
from quartet.services.gateway.agent_socket import AgentSocket
from quartet.services.gateway.routes import bench, chat, completions, health, metrics, models, playground, responses
from quartet.services.gateway.settings import GatewaySettings
from quartet.services.gateway.state import GatewayState


def create_app(settings: GatewaySettings | None = None, clients: Clients | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    gateway_metrics = GatewayMetrics()
    api_keys = ApiKeys(settings.all_api_keys())
    envelope = Envelope.from_settings(settings)
    limiter = (
        RateLimiter(settings.rate_limit_per_minute, burst=settings.rate_limit_burst)
        if settings.rate_limit_per_minute > 0
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = clients is None
        live = Clients.from_settings(settings) if owned else clients
        app.state.gateway = GatewayState(
            settings=settings,
            clients=live,
            catalog=ModelCatalog(live.engine, cache_seconds=settings.models_cache_seconds, router=live.router),
            metrics=gateway_metrics,
            api_keys=api_keys,
            envelope=envelope,
            rate_limiter=limiter,
            responses=(
                MemoryResponseStore(live.upstreams["memory"])
                if live.upstreams["memory"].enabled
                else None
            ),
        )
        try:
            yield
        finally:
            await agent_socket.close()
            if owned:
                await live.close()

    app = FastAPI(title="Quartet gateway", summary="OpenAI-compatible HTTP API", lifespan=lifespan)
    install_error_handlers(app)
    modules = (chat, completions, responses, models, bench, health, metrics)
    for module in modules:
        app.include_router(module.router)
    app.include_router(playground.router)
    app.mount("/static", StaticFiles(directory=playground.STATIC_DIR), name="static")
    # Agents over Socket.IO, on the same port (quartet/services/gateway/agent_socket.py).
    agent_socket = AgentSocket(app, settings)
    app.state.agent_socket = agent_socket
    app.mount("/socket.io", agent_socket.asgi_app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id", "retry-after"],
        )
    # Added last, so it is the outermost layer and also counts what CORS answers itself.
    routes = [route for module in modules for route in module.router.routes]
    app.add_middleware(MetricsMiddleware, metrics=gateway_metrics, routes=routes)
    install_openapi(app, [model for module in modules for model in getattr(module, "OPENAPI_MODELS", ())])
    return app
