"""``GET /healthz``'s answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    #: "ok" (HTTP 200) when every required service serves, else "unavailable" (HTTP 503).
    status: Literal["ok", "unavailable"]
    #: Each service's grpc.health.v1 status: SERVING, NOT_SERVING, UNREACHABLE, ... or "disabled".
    services: dict[str, str]
    #: The configured services that do not serve (a router or memory here does not fail the gateway).
    failing: list[str]
