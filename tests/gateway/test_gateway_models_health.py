"""``/v1/models`` and ``/healthz``, with real gRPC health servers for the other services."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2

from quartet.services.common.grpc_server import GrpcServer, build_server
from tests.servers import LiveGateway, gateway_settings


def test_models_list_and_retrieve(client: openai.OpenAI, http: httpx.Client, model_id: str) -> None:
    raw = http.get("/v1/models").json()
    assert raw["object"] == "list"
    assert [(m["object"], m["owned_by"]) for m in raw["data"]] == [("model", "quartet")]
    assert isinstance(raw["data"][0]["created"], int)
    models = client.models.list()
    assert [m.id for m in models.data] == [model_id]
    assert "/" in model_id, "the bundled model's id has a slash, which the route must accept"
    retrieved = client.models.retrieve(model_id)
    assert retrieved.id == model_id and retrieved.created == raw["data"][0]["created"]


def test_unknown_model_id_is_404(http: httpx.Client, model_id: str) -> None:
    reply = http.get("/v1/models/someone/else")
    assert reply.status_code == 404
    assert model_id in reply.json()["error"]["message"]


def test_healthz_serving_with_others_disabled(http: httpx.Client) -> None:
    reply = http.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {
        "status": "ok",
        "services": {"engine": "SERVING", "router": "disabled", "memory": "disabled"},
        "failing": [],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
async def router_health() -> Iterator[GrpcServer]:
    """A real gRPC server with only health (the router's own servicer is not needed to probe it)."""
    built = build_server("127.0.0.1:0", lambda server: None, ["quartet.router.v1.RouterService"])
    await built.start()
    yield built
    await built.stop(0)


async def test_healthz_reports_each_service(engine_address: str, router_health: GrpcServer) -> None:
    dead = f"127.0.0.1:{_free_port()}"
    settings = gateway_settings(engine_address, router_address=f"127.0.0.1:{router_health.port}", memory_address=dead)
    live = await asyncio.to_thread(LiveGateway, settings)
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            reply = await http.get("/healthz")
            assert reply.status_code == 200, "a down memory service does not take the gateway down"
            assert reply.json()["services"] == {"engine": "SERVING", "router": "SERVING", "memory": "UNREACHABLE"}
            assert reply.json()["failing"] == ["memory"]

            await router_health.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            reply = await http.get("/healthz")
            assert reply.json()["services"]["router"] == "NOT_SERVING"
            assert reply.status_code == 200
    finally:
        await asyncio.to_thread(live.stop)


def test_healthz_is_503_when_the_engine_is_down(gateway_server) -> None:
    with gateway_server(f"127.0.0.1:{_free_port()}") as live:
        reply = httpx.get(f"{live.url}/healthz", timeout=10)
        assert reply.status_code == 503
        assert reply.json()["status"] == "unavailable"
        assert reply.json()["services"]["engine"] == "UNREACHABLE"
        assert reply.json()["failing"] == ["engine"]
        assert reply.elapsed.total_seconds() < 3, "a health check must be short"
