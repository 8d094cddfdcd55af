"""Timing with device events: warm-up, then samples of many calls, median and percentiles.

On CUDA each sample replays a CUDA graph of R calls (rotating over the input sets so the
weights come from DRAM, not L2) between two events; the per-call time is the sample
over R. Graph replay removes the CPU's launch cost, as the engine's decode graphs do;
``eager`` samples time the same R calls launched one by one. On the CPU, wall clock.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

SAMPLE_MS = 2.0  # each sample spans at least this long, so event resolution is noise
MAX_REPS = 512


@dataclass(frozen=True, slots=True)
class Timing:
    median_us: float
    p20_us: float
    p80_us: float
    eager_us: float
    reps: int
    samples: int


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _summary(per_call_us: list[float], eager_us: float, reps: int) -> Timing:
    return Timing(statistics.median(per_call_us), _percentile(per_call_us, 0.2), _percentile(per_call_us, 0.8),
                  eager_us, reps, len(per_call_us))


def _events_ms(run: Callable[[], None]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def time_calls(calls: list[Callable[[], object]], *, samples: int = 25, use_graph: bool = True) -> Timing:
    """Time one call, rotating over ``calls`` (one per input set). Each must be graph-capturable."""
    if not torch.cuda.is_available() or not _on_cuda(calls):
        return _time_cpu(calls, samples)
    for call in calls:  # warm-up: compile, autotune caches, allocator pools
        call()
    torch.cuda.synchronize()
    one = _events_ms(lambda: [call() for call in calls]) / len(calls)
    reps = max(len(calls), min(MAX_REPS, int(SAMPLE_MS / max(one, 1e-4)) + 1))
    reps = -(-reps // len(calls)) * len(calls)

    def loop() -> None:
        for r in range(reps):
            calls[r % len(calls)]()

    eager = statistics.median(_events_ms(loop) * 1000 / reps for _ in range(5))
    if not use_graph:
        return _summary([_events_ms(loop) * 1000 / reps for _ in range(samples)], eager, reps)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        loop()  # a side-stream warm-up is what graph capture wants before recording
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, stream=stream):
            loop()
    torch.cuda.current_stream().wait_stream(stream)
    graph.replay()
    per_call = [_events_ms(graph.replay) * 1000 / reps for _ in range(samples)]
    del graph
    return _summary(per_call, eager, reps)


def _on_cuda(calls: list[Callable[[], object]]) -> bool:
    out = calls[0]()
    return isinstance(out, torch.Tensor) and out.is_cuda


def _time_cpu(calls: list[Callable[[], object]], samples: int) -> Timing:
    calls[0]()
    per_call = []
    for i in range(samples):
        start = time.perf_counter()
        calls[i % len(calls)]()
        per_call.append((time.perf_counter() - start) * 1e6)
    return _summary(per_call, statistics.median(per_call), 1)
