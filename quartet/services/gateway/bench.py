"""``/bench``: several synthetic prompts run at once through the engine, and the decode speed they got.

Every prompt generates exactly ``max_tokens`` tokens (greedy, end-of-sequence
ignored), so runs are comparable. The aggregate decode rate counts the tokens
after each request's first one, over the span from the earliest first token
to the last completion: the batch's steady decode throughput, with prefill
left out (it is in the time to first token).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from pydantic import BaseModel
from quartet.engine.v1 import engine_pb2

from quartet.services.common.engine_client import EngineClient, StreamObserver

_TOPICS = ("the sea", "a mountain village", "an old clock", "the first snow", "a city at night", "a lost letter", "bees", "a lighthouse")


class BenchRequestResult(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_seconds: float
    total_seconds: float
    #: The engine's own figure for this request (tokens after the first, per second).
    engine_decode_tokens_per_second: float


class BenchResult(BaseModel):
    model: str
    count: int
    max_tokens: int
    wall_seconds: float
    total_completion_tokens: int
    #: All generated tokens over the whole run's wall time, prefill included.
    output_tokens_per_second: float
    #: Tokens after each first one, over the span from the earliest first token to the last completion.
    aggregate_decode_tokens_per_second: float
    mean_time_to_first_token_seconds: float
    requests: list[BenchRequestResult]


@dataclass(slots=True)
class _Run:
    started: float
    first_token_at: float | None = None
    ended_at: float | None = None
    complete: engine_pb2.Complete | None = None


def _prompt(position: int) -> str:
    topic = _TOPICS[position % len(_TOPICS)]
    return f"Write a long, detailed story about {topic}. Story number {position + 1}:"


async def _one(engine: EngineClient, model: str, position: int, max_tokens: int, observer: StreamObserver | None) -> _Run:
    request = engine_pb2.GenerateRequest(
        request_id=f"bench-{uuid.uuid4().hex[:12]}-{position}",
        model=model,
        text=_prompt(position),
        sampling=engine_pb2.SamplingParams(temperature=0.0),
        stopping=engine_pb2.StoppingCriteria(max_tokens=max_tokens, ignore_eos=True),
    )
    run = _Run(started=time.monotonic())
    stream = engine.generate(request, observer)
    async for event in stream.events():
        if event.WhichOneof("event") == "chunk" and event.chunk.token_ids and run.first_token_at is None:
            run.first_token_at = time.monotonic()
        elif event.WhichOneof("event") == "complete":
            run.complete = event.complete
    run.ended_at = time.monotonic()
    return run


async def run_bench(
    engine: EngineClient, model: str, *, count: int, max_tokens: int, observers: list[StreamObserver | None] | None = None
) -> BenchResult:
    """Run ``count`` prompts concurrently, ``max_tokens`` each, and measure them."""
    observers = observers or [None] * count
    started = time.monotonic()
    tasks = [asyncio.ensure_future(_one(engine, model, i, max_tokens, observers[i])) for i in range(count)]
    try:
        runs = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    wall = time.monotonic() - started
    results = []
    for run in runs:
        complete = run.complete or engine_pb2.Complete()
        first = run.first_token_at if run.first_token_at is not None else run.ended_at
        results.append(
            BenchRequestResult(
                prompt_tokens=complete.usage.prompt_tokens,
                completion_tokens=complete.usage.completion_tokens,
                time_to_first_token_seconds=round(first - run.started, 4),
                total_seconds=round(run.ended_at - run.started, 4),
                engine_decode_tokens_per_second=round(complete.timings.decode_tokens_per_second, 2),
            )
        )
    total = sum(r.completion_tokens for r in results)
    firsts = [run.first_token_at for run in runs if run.first_token_at is not None]
    decode_span = max(run.ended_at for run in runs) - min(firsts) if firsts else 0.0
    decode_tokens = sum(max(0, r.completion_tokens - 1) for r in results)
    return BenchResult(
        model=model,
        count=count,
        max_tokens=max_tokens,
        wall_seconds=round(wall, 4),
        total_completion_tokens=total,
        output_tokens_per_second=round(total / wall, 2) if wall > 0 else 0.0,
        aggregate_decode_tokens_per_second=round(decode_tokens / decode_span, 2) if decode_span > 0 else 0.0,
        mean_time_to_first_token_seconds=round(sum(r.time_to_first_token_seconds for r in results) / count, 4),
        requests=results,
    )
