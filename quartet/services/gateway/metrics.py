"""Prometheus metrics of the gateway, served at ``GET /metrics`` in the text exposition format.

Each app has its own registry (two gateways in one process, as in the tests,
do not share counters). Routes are labelled by their template
(``/v1/models/{model_id:path}``), never by the raw path, so a client cannot
grow the label set. Time to first token and time per output token are
measured here, around the engine stream, so they include the gateway's own
overhead; the engine's figures are in its Complete events.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quartet.engine.v1 import engine_pb2
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
_PREFIX = "quartet_gateway"
#: A request that matched no route.
UNMATCHED = "unmatched"


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{_PREFIX}_requests", "HTTP requests answered, by route, method and status code.", ["route", "method", "status"], registry=r
        )
        self.errors = Counter(
            f"{_PREFIX}_errors",
            "Failed requests by route and status code, including failures inside a stream that had answered 200.",
            ["route", "status"],
            registry=r,
        )
        self.in_flight = Gauge(f"{_PREFIX}_requests_in_flight", "Requests being answered now, streams included.", ["route"], registry=r)
        self.duration = Histogram(
            f"{_PREFIX}_request_duration_seconds", "Seconds from request to the end of the answer.", ["route"], registry=r,
            buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.ttft = Histogram(
            f"{_PREFIX}_time_to_first_token_seconds", "Seconds from the engine call to its first generated token.", ["route"], registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.tpot = Histogram(
            f"{_PREFIX}_time_per_output_token_seconds", "Seconds per generated token after the first.", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
        )
        self.prompt_tokens = Counter(f"{_PREFIX}_prompt_tokens", "Prompt tokens sent to the engine.", ["route"], registry=r)
        self.completion_tokens = Counter(f"{_PREFIX}_completion_tokens", "Tokens the engine generated.", ["route"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def meter(self, route: str) -> GenerationMeter:
        return GenerationMeter(self, route)

    def stream_failed(self, route: str, status: int) -> None:
        """A stream that had already answered 200 ended with an error event."""
        self.errors.labels(route, str(status)).inc()


class GenerationMeter:
    """Watches one engine stream: first-token time, per-token time, tokens in and out."""

    def __init__(self, metrics: GatewayMetrics, route: str) -> None:
        self._metrics = metrics
        self._route = route
        self._started = time.monotonic()
        self._first_token_at: float | None = None
        self._usage: engine_pb2.Usage | None = None
        self._closed = False

    def on_event(self, event: engine_pb2.GenerateResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "chunk":
            chunk = event.chunk
            if self._first_token_at is None and chunk.token_ids:
                self._first_token_at = time.monotonic()
                self._metrics.ttft.labels(self._route).observe(self._first_token_at - self._started)
            if chunk.HasField("usage"):
                self._usage = chunk.usage
        elif kind == "complete" and event.complete.HasField("usage"):
            self._usage = event.complete.usage

    def close(self) -> None:
        """Record the totals; called once however the stream ended (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._usage is None:
            return
        route = self._route
        self._metrics.prompt_tokens.labels(route).inc(self._usage.prompt_tokens)
        self._metrics.completion_tokens.labels(route).inc(self._usage.completion_tokens)
        if self._first_token_at is not None and self._usage.completion_tokens > 1:
            per_token = (time.monotonic() - self._first_token_at) / (self._usage.completion_tokens - 1)
            self._metrics.tpot.labels(route).observe(per_token)


def route_of(scope: Scope, routes: list[BaseRoute]) -> str:
    """The template of the route ``scope`` goes to, or "unmatched"."""
    # The app's own routes (/openapi.json, /docs) come from the app; the API's from the routers given.
    app_routes = [route for route in getattr(scope.get("app"), "routes", ()) if hasattr(route, "path")]
    for route in [*routes, *app_routes]:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path
    return UNMATCHED


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): streams and disconnect detection pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope, self.routes)
        status = 500

        async def send_watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        started = time.monotonic()
        metrics.in_flight.labels(route).inc()
        try:
            await self.app(scope, receive, send_watched)
        finally:
            metrics.in_flight.labels(route).dec()
            metrics.duration.labels(route).observe(time.monotonic() - started)
            metrics.requests.labels(route, scope["method"], str(status)).inc()
            if status >= 400:
                metrics.errors.labels(route, str(status)).inc()
