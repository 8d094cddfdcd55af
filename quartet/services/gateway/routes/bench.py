"""``GET /bench?count=&max_tokens=``: aggregate decode tokens/s of concurrent synthetic prompts, as JSON.

One run at a time (a second one meanwhile is a 429): overlapping runs would
measure each other. The caps (BENCH_MAX_COUNT, BENCH_MAX_TOKENS) keep a caller
from occupying the engine for long.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from quartet.services.common.errors import ResourceExhausted
from quartet.services.gateway.bench import BenchResult, run_bench
from quartet.services.gateway.disconnect import until_disconnect
from quartet.services.gateway.errors import BadRequest
from quartet.services.gateway.limits import guard
from quartet.services.gateway.state import GatewayState, gateway_state

router = APIRouter(tags=["bench"], dependencies=[Depends(guard)])
ROUTE = "/bench"


def _capped(value: int, cap: int, name: str) -> int:
    if value > cap:
        raise BadRequest(f"{name} is {value}; this server allows at most {cap} (BENCH_MAX_{name.upper()})", field=name, code="invalid_value")
    return value


@router.get(ROUTE)
async def bench(
    request: Request,
    count: int = Query(default=4, ge=1, description="Prompts run at once."),
    max_tokens: int = Query(default=32, ge=1, description="Tokens each prompt generates (end-of-sequence ignored)."),
    state: GatewayState = Depends(gateway_state),
) -> BenchResult:
    settings = state.settings
    count = _capped(count, settings.bench_max_count, "count")
    max_tokens = _capped(max_tokens, settings.bench_max_tokens, "max_tokens")
    if state.bench_lock.locked():
        raise ResourceExhausted("a benchmark is already running; retry when it is done")
    async with state.bench_lock:
        model = (await state.catalog.list())[0].id
        observers = [state.metrics.meter(ROUTE) for _ in range(count)]
        work = run_bench(state.clients.engine, model, count=count, max_tokens=max_tokens, observers=observers)
        return await until_disconnect(request, work)
