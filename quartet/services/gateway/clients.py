"""gRPC clients of the other services, opened and closed with the app.

Each service is a ``common.rpc.Upstream``: its deadlines, fast reconnection and status
mapping are the ones every Quartet client uses; the gateway only names upstream fields
as OpenAI parameters (``errors.openai_param``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from quartet.services.common.engine_client import EngineClient
from quartet.services.common.rpc import Deadlines, ServiceChannel, Upstream
from quartet.services.gateway.errors import openai_param
from quartet.services.gateway.router_client import RouterClient
from quartet.services.gateway.settings import GatewaySettings


@dataclass
class Clients:
    """Everything the gateway talks to, keyed by service name in ``upstreams``."""

    engine: EngineClient
    upstreams: dict[str, Upstream]
    #: The router's agents (``agent/<name>`` models); None when built without one.
    router: RouterClient | None = None

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Clients:
        """Build the clients; call inside the event loop that will use them."""
        addresses = {
            "engine": settings.engine_address,
            "router": settings.router_address,
            "memory": settings.memory_address,
        }
        deadlines = Deadlines(rpc_seconds=settings.rpc_timeout_seconds, stream_seconds=settings.request_timeout_seconds)
        upstreams = {
            name: Upstream(
                ServiceChannel(
                    name,
                    address,
                    connect_timeout_seconds=settings.connect_timeout_seconds,
                    drain_seconds=settings.request_timeout_seconds,
                ),
                deadlines,
                field_name=openai_param,
            )
            for name, address in addresses.items()
        }
        router = RouterClient(upstreams["router"], cache_seconds=settings.models_cache_seconds)
        return cls(engine=EngineClient(upstreams["engine"]), upstreams=upstreams, router=router)

    async def health(self, timeout: float) -> dict[str, str]:
        names = list(self.upstreams)
        statuses = await asyncio.gather(*(self.upstreams[name].channel.health(timeout) for name in names))
        return dict(zip(names, statuses))

    async def close(self) -> None:
        await asyncio.gather(*(upstream.close() for upstream in self.upstreams.values()))
