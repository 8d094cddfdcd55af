"""Prometheus metrics of the engine, served at ``/metrics`` on ENGINE_METRICS_PORT (0 = off).

Names follow vLLM's where one exists (``vllm:time_to_first_token_seconds`` ->
``quartet_engine_time_to_first_token_seconds``) so existing dashboards map
over. Each engine has its own registry, so several engines in one process
(tests) never collide, and a scrape sees only this engine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from quartet.services.engine.sched.block_manager import BlockManager
    from quartet.services.engine.sched.scheduler import Scheduler

log = logging.getLogger(__name__)

PREFIX = "quartet_engine_"

#: Latency buckets from 1 ms to 2 minutes: CPU decode steps are tens of ms, a queued request can wait minutes.
LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75),
    *(1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0),
)


class EngineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(PREFIX + name, doc, buckets=LATENCY_BUCKETS, registry=self.registry)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(PREFIX + name, doc, registry=self.registry)

        self.queue_seconds = histogram("queue_time_seconds", "Arrival to first scheduled step, per request")
        self.time_to_first_token_seconds = histogram("time_to_first_token_seconds", "Arrival to first output token")
        self.time_per_output_token_seconds = histogram(
            "time_per_output_token_seconds", "Gap between consecutive output tokens of a sequence"
        )
        self.prompt_tokens = counter("prompt_tokens", "Prompt tokens computed (prefix-cache hits excluded)")
        self.generation_tokens = counter("generation_tokens", "Output tokens sampled")
        self.requests = counter("requests", "Finished requests", ("finish_reason",))
        self.steps = counter(
            "steps", "Steps launched; overlapped: the next one launched before this one's tokens were read",
            ("overlapped",),
        )  # fmt: skip
        self.preemptions = counter("preemptions", "Sequences preempted for KV blocks (recomputed later)")
        self.num_running = gauge("num_requests_running", "Requests with a sequence running")
        self.num_waiting = gauge("num_requests_waiting", "Requests with a sequence waiting")
        self.kv_usage = gauge("kv_cache_usage_ratio", "Fraction of KV blocks held by sequences")
        self.kv_blocks = gauge("kv_cache_blocks", "KV blocks in the pool")
        self.prefix_queries = gauge("prefix_cache_queried_tokens", "Prompt tokens looked up in the prefix cache")
        self.prefix_hits = gauge("prefix_cache_hit_tokens", "Prompt tokens found in the prefix cache")
        self.prefix_hit_rate = gauge("prefix_cache_hit_rate", "Prefix-cache hit tokens / queried tokens so far")
        self._server = None

    def observe_step(self, scheduler: Scheduler, blocks: BlockManager) -> None:
        """Refresh the gauges after a step (cheap: a few attribute reads)."""
        self.num_running.set(scheduler.num_running)
        self.num_waiting.set(scheduler.num_waiting)
        self.kv_blocks.set(blocks.num_blocks)
        self.kv_usage.set(blocks.usage())
        stats = blocks.stats
        self.prefix_queries.set(stats.queried_tokens)
        self.prefix_hits.set(stats.hit_tokens)
        self.prefix_hit_rate.set(stats.hit_tokens / stats.queried_tokens if stats.queried_tokens else 0.0)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Start the ``/metrics`` HTTP server in a daemon thread; returns the bound port (``port`` 0 picks one)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        self._server = server
        bound = server.server_address[1]
        log.info("metrics serving", extra={"host": server.server_address[0], "port": bound})
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
