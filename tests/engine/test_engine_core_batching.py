"""Continuous batching on the bundled model, with the cache made small enough to need every mechanism.

An engine with a 12-block (192-token) KV pool, a 32-token step budget and
prefix caching serves four concurrent chat requests that share a system
prompt: prompts are prefilled in chunks, share their first blocks, and some
sequences are preempted and recomputed. Greedy outputs must still equal what
the default engine (large pool, no pressure) produces for each request alone,
and the Prometheus endpoint must report what happened, over HTTP.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from quartet.services.engine.core import EngineCore
from quartet.services.engine.api.events import Chunk, Complete
from quartet.services.engine.api.request import ChatInput, ChatMessage, GenerateRequest, SamplingParams, StoppingCriteria
from quartet.services.engine.settings import EngineSettings
from tests.helpers import ThreadLoop

SYSTEM = "You are a helpful assistant who answers in one or two short sentences, without lists."
QUESTIONS = ["What is the capital of France?", "Why is the sky blue?", "Name a large mammal.", "What is 2 + 2?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pressured_core() -> Iterator[EngineCore]:
    settings = EngineSettings(
        _env_file=None,
        weight_format="bf16",  # dense fp32, like the reference engine, so outputs compare exactly
        kv_cache_blocks=12,
        block_size=16,
        max_num_seqs=4,
        max_num_batched_tokens=32,
        metrics_port=free_port(),
    )
    core = EngineCore.from_settings(settings)
    yield core
    with ThreadLoop("pressured-close") as loop:
        loop.run(core.close())


def request(question: str, max_tokens: int = 24) -> GenerateRequest:
    messages = (ChatMessage("system", SYSTEM), ChatMessage("user", question))
    return GenerateRequest(
        input=ChatInput(messages),
        sampling=SamplingParams(temperature=0),
        stopping=StoppingCriteria(max_tokens=max_tokens, ignore_eos=True),
    )


async def tokens(core: EngineCore, req: GenerateRequest) -> list[int]:
    out = []
    async for event in core.generate(req):
        if isinstance(event, Chunk):
            out.extend(event.token_ids)
        else:
            assert isinstance(event, Complete), event
    return out


def scrape(core: EngineCore) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{core.metrics_port}/metrics", timeout=10).read().decode()
    values = {}
    for line in body.splitlines():
        match = re.match(r"^(quartet_engine_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match and not match.group(2):
            values[match.group(1)] = float(match.group(3))
    return values


async def test_outputs_survive_chunking_prefix_sharing_and_preemption(engine_core, pressured_core) -> None:
    alone = [await tokens(engine_core, request(q)) for q in QUESTIONS]
    before = scrape(pressured_core)
    together = await asyncio.gather(*(tokens(pressured_core, request(q)) for q in QUESTIONS))
    assert together == alone
    after = scrape(pressured_core)
    assert after["quartet_engine_preemptions_total"] > before.get("quartet_engine_preemptions_total", 0)
    assert after["quartet_engine_prefix_cache_hit_tokens"] > before.get("quartet_engine_prefix_cache_hit_tokens", 0)
    generated = after["quartet_engine_generation_tokens_total"]
    assert generated - before.get("quartet_engine_generation_tokens_total", 0) == 24 * len(QUESTIONS)
    assert after["quartet_engine_time_to_first_token_seconds_count"] - before.get(
        "quartet_engine_time_to_first_token_seconds_count", 0
    ) == len(QUESTIONS)
    assert after["quartet_engine_kv_cache_blocks"] == 12
    # The gauges are set after each step's bookkeeping, which follows the flush that delivered the
    # last Complete: the scrape may land in between, so wait (a step or so) for them to settle.
    deadline = time.monotonic() + 10
    while (after["quartet_engine_num_requests_running"], after["quartet_engine_num_requests_waiting"]) != (0, 0):
        assert time.monotonic() < deadline, after
        await asyncio.sleep(0.05)
        after = scrape(pressured_core)


async def test_a_repeated_prompt_computes_fewer_prompt_tokens(pressured_core) -> None:
    def prompt_tokens() -> float:
        return scrape(pressured_core).get("quartet_engine_prompt_tokens_total", 0.0)

    start = prompt_tokens()
    first = await tokens(pressured_core, request("Tell me about owls.", max_tokens=4))
    middle = prompt_tokens()
    second = await tokens(pressured_core, request("Tell me about owls.", max_tokens=4))
    end = prompt_tokens()
    assert first == second
    assert end - middle < (middle - start) / 2  # most of the prompt came from the prefix cache


def test_metrics_endpoint_is_off_unless_a_port_is_set(engine_core) -> None:
    assert engine_core.metrics_port == 0


def test_start_up_heap_is_frozen_while_serving_and_released_at_close() -> None:
    """After start-up the model and its tables sit outside the collector's reach (a full collection
    would otherwise walk them while no step is launched); close hands them back."""
    import gc

    gc.unfreeze()
    core = EngineCore.from_settings(EngineSettings(_env_file=None, weight_format="bf16", metrics_port=free_port()))
    try:
        assert gc.get_freeze_count() > 0
    finally:
        with ThreadLoop("frozen-close") as loop:
            loop.run(core.close())
    assert gc.get_freeze_count() == 0


def test_metrics_bind_loopback_unless_configured() -> None:
    """Issue 18: the unauthenticated Prometheus endpoint is not on every interface by default."""
    from quartet.services.engine.metrics import EngineMetrics

    assert EngineSettings(_env_file=None).metrics_host == "127.0.0.1"
    metrics = EngineMetrics()
    try:
        port = metrics.serve(0)
        assert metrics._server.server_address[0] == "127.0.0.1"
        assert b"quartet_engine" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    finally:
        metrics.close()
