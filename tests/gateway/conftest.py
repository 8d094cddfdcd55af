"""Clients of the session's live gateway (fixture ``gateway`` of tests/conftest.py: uvicorn on a
free port in a background thread, with its own loop, in front of the real engine server), so sync
clients (the sync ``openai`` SDK, httpx) and async ones (on pytest's loop) can both call it
without deadlocking anything."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.gateway.live import EngineProbe
from tests.servers import LiveGateway


@pytest.fixture(scope="session")
def gateway_url(gateway: LiveGateway) -> str:
    return gateway.url


@pytest.fixture(scope="session")
def model_id(gateway_url: str) -> str:
    return httpx.get(f"{gateway_url}/v1/models").json()["data"][0]["id"]


@pytest.fixture()
def http(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=120) as client:
        yield client


@pytest.fixture()
def client(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture()
async def async_client(gateway_url: str):
    async with openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture()
def engine_probe(engine_address: str) -> Iterator[EngineProbe]:
    probe = EngineProbe(engine_address)
    yield probe
    probe.channel.close()
