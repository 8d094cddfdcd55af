"""``GET /metrics``: the gateway's Prometheus metrics (text exposition format).

Open like /healthz by default, so a scraper needs no secret; ``METRICS_REQUIRE_KEY=true`` asks
for an API key (when ``API_KEYS`` are set), through the same check as every API route.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from quartet.services.gateway.limits import authenticate
from quartet.services.gateway.metrics import CONTENT_TYPE
from quartet.services.gateway.state import GatewayState, gateway_state

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, state: GatewayState = Depends(gateway_state)) -> Response:
    if state.settings.metrics_require_key:
        # Authentication only: a scraper's polls do not spend the caller's rate limit.
        authenticate(request)
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
