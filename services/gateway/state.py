"""What routes share: settings, clients and the model catalog, held on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from services.gateway.clients import Clients
from services.gateway.model_catalog import ModelCatalog
from services.gateway.settings import GatewaySettings


@dataclass
class GatewayState:
    settings: GatewaySettings
    clients: Clients
    catalog: ModelCatalog


def gateway_state(request: Request) -> GatewayState:
    """FastAPI dependency: the running app's state."""
    return request.app.state.gateway
