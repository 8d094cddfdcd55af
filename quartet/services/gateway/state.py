"""What routes share: settings, clients, the model catalog and the request policies, held on ``app.state``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request

from quartet.services.gateway.auth import ApiKeys
from quartet.services.gateway.clients import Clients
from quartet.services.gateway.fernet import Envelope
from quartet.services.gateway.metrics import GatewayMetrics
from quartet.services.gateway.model_catalog import ModelCatalog
from quartet.services.gateway.rate_limit import RateLimiter
from quartet.services.gateway.response_store import ResponseStore
from quartet.services.gateway.settings import GatewaySettings


@dataclass
class GatewayState:
    settings: GatewaySettings
    clients: Clients
    catalog: ModelCatalog
    metrics: GatewayMetrics
    api_keys: ApiKeys
    #: None when encrypted payloads are off (no ENCRYPTION_KEY).
    envelope: Envelope | None = None
    #: None when there is no rate limit.
    rate_limiter: RateLimiter | None = None
    #: Where stored responses live (the memory service); None without one.
    responses: ResponseStore | None = None
    #: Held while a /bench run is going on.
    bench_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def gateway_state(request: Request) -> GatewayState:
    """FastAPI dependency: the running app's state."""
    return request.app.state.gateway
