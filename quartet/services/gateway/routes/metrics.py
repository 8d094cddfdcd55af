"""``GET /metrics``: the gateway's Prometheus metrics (text exposition format). Open, like /healthz."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from quartet.services.gateway.metrics import CONTENT_TYPE
from quartet.services.gateway.state import GatewayState, gateway_state

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(state: GatewayState = Depends(gateway_state)) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
