"""``GET /healthz``: is the gateway able to answer? It is when the engine serves.

Each configured service is probed through grpc.health.v1 at once, each within
``health_timeout_seconds``; a service without an address is "disabled".
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from quartet.services.gateway.schemas.health import Health
from quartet.services.gateway.state import GatewayState, gateway_state

router = APIRouter(tags=["health"])

#: Services the gateway cannot answer without.
REQUIRED = ("engine",)


@router.get("/healthz", response_model=Health)
async def healthz(state: GatewayState = Depends(gateway_state)) -> JSONResponse:
    services = await state.clients.health(state.settings.health_timeout_seconds)
    failing = [name for name, status in services.items() if status not in ("SERVING", "disabled")]
    ok = all(services.get(name) == "SERVING" for name in REQUIRED)
    health = Health(status="ok" if ok else "unavailable", services=services, failing=failing)
    return JSONResponse(health.model_dump(), status_code=200 if ok else 503)
