"""GPU time of every step the runner launches, for benchmarks: is a workload GPU- or host-bound?

With asynchronous scheduling the host prepares a step while the GPU runs the one before, so a
step's wall time is the larger of the two. CUDA events around each launch give the GPU's side;
the host timestamps of consecutive launches give the wall side. Off unless a benchmark switches
it on (``NativeRunner.step_timings``): events cost a few microseconds a step.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch


@dataclass(slots=True)
class StepTiming:
    path: str  # "decode_graph", "prefill_graph" or "eager"
    tokens: int
    launched: float = field(default_factory=time.perf_counter)
    start: torch.cuda.Event = field(default_factory=lambda: torch.cuda.Event(enable_timing=True))
    end: torch.cuda.Event = field(default_factory=lambda: torch.cuda.Event(enable_timing=True))

    def gpu_ms(self) -> float:
        return self.start.elapsed_time(self.end)


def summarize(timings: list[StepTiming], *, min_decode_rows: int = 1) -> dict[str, float]:
    """Per path: steps, GPU ms (median and total); for decode graphs of at least ``min_decode_rows`` rows,
    the median wall time from one launch to the next as well. Synchronizes the device."""
    torch.cuda.synchronize()
    out: dict[str, float] = {}
    for path in ("decode_graph", "prefill_graph", "eager"):
        chosen = [t for t in timings if t.path == path]
        if path == "decode_graph":
            chosen = [t for t in chosen if t.tokens >= min_decode_rows]
        if not chosen:
            continue
        gpu = [t.gpu_ms() for t in chosen]
        out[f"{path}_steps"] = len(chosen)
        out[f"{path}_gpu_ms_median"] = statistics.median(gpu)
        out[f"{path}_gpu_s_total"] = sum(gpu) / 1000
    launches = [t.launched for t in timings]
    gaps = [
        (b - a) * 1000
        for t, a, b in zip(timings, launches, launches[1:])
        if t.path == "decode_graph" and t.tokens >= min_decode_rows
    ]
    if gaps:
        out["decode_graph_wall_ms_median"] = statistics.median(gaps)
    if len(launches) > 1:
        out["wall_s"] = launches[-1] - launches[0]
    return out


def idle_between(timings: list[StepTiming], count: int = 5) -> dict[str, object]:
    """The GPU's idle time between consecutive steps (one step's end event to the next one's start),
    in total, by the kind of step that followed, and the ``count`` longest gaps as (previous path,
    next path, next step's tokens, ms); call after ``summarize`` (synchronized). A step's own GPU time
    starts when its launch begins, so idling while its kernels are being enqueued counts there, not here."""
    gaps = [(a.end.elapsed_time(b.start), a.path, b.path, b.tokens) for a, b in zip(timings, timings[1:])]
    by_next: dict[str, float] = {}
    for ms, _, nxt, _ in gaps:
        by_next[nxt] = by_next.get(nxt, 0.0) + max(0.0, ms)
    longest = sorted(gaps, key=lambda g: -g[0])[:count]
    return {"idle_s_total": sum(max(0.0, g[0]) for g in gaps) / 1000,
            "idle_s_before": {k: round(v / 1000, 4) for k, v in by_next.items()},
            "idle_longest": [(prev, nxt, tokens, round(ms, 1)) for ms, prev, nxt, tokens in longest]}


def slowest(timings: list[StepTiming], path: str, count: int = 5) -> list[tuple[int, float]]:
    """(tokens, GPU ms) of the ``count`` slowest steps of ``path``; call after ``summarize`` (synchronized)."""
    chosen = sorted(((t.tokens, t.gpu_ms()) for t in timings if t.path == path), key=lambda p: -p[1])
    return [(tokens, round(ms, 1)) for tokens, ms in chosen[:count]]


class CompileLog:
    """Triton kernels compiled (or loaded from Triton's disk cache) while it is active, by name.

    A step whose kernels compile mid-run shows as a GPU-time outlier (the GPU idles while the host
    compiles); this names them. Uses Triton's ``jit_cache_hook``, which sees every compilation.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._previous = None

    def __enter__(self) -> CompileLog:
        import triton

        self._previous = triton.knobs.runtime.jit_cache_hook
        triton.knobs.runtime.jit_cache_hook = self._hook
        return self

    def _hook(self, **kwargs: object) -> None:  # returning None lets the compilation go on
        fn = kwargs.get("fn")
        self.names.append(str(getattr(fn, "name", fn)))

    def __exit__(self, *exc: object) -> None:
        import triton

        triton.knobs.runtime.jit_cache_hook = self._previous


class GcPauses:
    """Python's garbage-collector pauses while active: how many, their total and the longest (ms), by
    generation. A full collection over every object the process holds stops the engine's loop (no step
    is launched meanwhile) for as long as it takes."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((int(info.get("generation", -1)), (time.perf_counter() - self._started) * 1000))

    def __enter__(self) -> GcPauses:
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, object]:
        by_gen: dict[int, list[float]] = {}
        for gen, ms in self.pauses:
            by_gen.setdefault(gen, []).append(ms)
        return {"gc_pauses": {f"gen{g}": {"count": len(v), "total_ms": round(sum(v), 1), "max_ms": round(max(v), 1)}
                              for g, v in sorted(by_gen.items())}}
