"""Decode-step benchmark: one decode step of the aggregate benchmark, at gpt-oss-20b shapes.

    python -m benchmarks.engine_decode_step [--out DIR] [--batches 64,256] [--context 1152] [--repeats 7]

``engine_gpu``'s 256-concurrent row spends about 45 % of its time in decode steps of 256
sequences (1024-token prompts, up to 256 new tokens). This runs that step alone: the real
``NativeRunner.execute`` on ``--batches`` sequences of ``--context`` tokens each taking one
new token (KV blocks from the real block manager; their contents are random, which changes
no timing), the model of ``engine_gpu.build_core`` (random MXFP4 weights), eagerly so that
``torch.profiler`` sees every kernel (the served step replays the same kernels from a graph).

Printed: the step's median time, a table of its top kernels, ``group_by_expert``'s time, and one
MoE layer at the step's ``4 x batch`` pairs for each candidate ``GroupedConfig`` (CUDA-graph replays, with the
output's rel. L2 against the default), beside the layer's floor: its experts' MXFP4 bytes
over the copy bandwidth measured in the same run (every expert is hit at these pair counts).
Same wheels and invocation as ``engine_gpu`` (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path

import torch

from benchmarks.harness.timing import time_calls
from quartet.kernels.mxfp4 import moe
from quartet.kernels.mxfp4.moe_layout import group_by_expert
from quartet.kernels.mxfp4.moe_grouped import GroupedConfig, grouped_config
from quartet.kernels.mxfp4.reference import route_torch
from benchmarks.engine_gpu import copy_bandwidth
from benchmarks.engine_step import eager_core, interleaved, prefill_batch, top_kernels


def candidates(pairs: int, experts: int) -> dict[str, GroupedConfig]:
    """The default tiles at this pair count and single-knob changes of them."""
    base = grouped_config(pairs, experts)
    knobs = {"bn 32": dict(bn=32), "bn 64": dict(bn=64), "bn 128": dict(bn=128), "bn_down 64": dict(bn_down=64),
             "bn_down 128": dict(bn_down=128), "stages 4": dict(num_stages=4), "down 8 warps": dict(down_warps=8),
             "w_left flipped": dict(w_left=not base.w_left)}  # fmt: skip
    out = {"default": base}
    out.update({name: cfg for name, kw in knobs.items() if (cfg := dataclasses.replace(base, **kw)) != base})
    return out


def routed(tokens: int, experts: int, hidden: int, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(tokens)
    x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16, generator=g)
    ids, wts = route_torch(torch.randn(tokens, experts, device="cuda", generator=g), top_k)
    return x, ids, wts


def moe_candidates(layer, tokens: int) -> dict[str, tuple[float, float]]:
    """µs (median of CUDA-graph replays: a served decode step replays these launches from a graph, and
    eager calls of this size are bound by Python's launch time) and rel. L2 against the default, of
    one MoE layer on ``tokens`` tokens per candidate tiles."""
    w, c = layer.mlp.experts, layer.mlp
    x, ids, wts = routed(tokens, w.num_experts, w.hidden, c.top_k)
    out, first = {}, None
    for name, cfg in candidates(ids.numel(), w.num_experts).items():
        fn = lambda cfg=cfg: moe.mxfp4_moe_triton(x, ids, wts, w, alpha=c.alpha, limit=c.limit,  # noqa: E731
                                                  path="grouped", config=cfg)
        try:
            y = fn().float()  # compiles; a candidate that fails is reported, not fatal
            us = time_calls([fn], samples=10).median_us
        except Exception as error:  # noqa: BLE001
            print(json.dumps({"moe_error": name, "error": f"{type(error).__name__}: {error}"[:300]}))
            continue
        first = y if first is None else first
        out[name] = (us, ((y - first).norm() / first.norm()).item())
        print(json.dumps({"tokens": tokens, "tiles": name, "us": round(us, 1)}), flush=True)
    return out


def grouping(layer, tokens: int) -> float:
    """µs of ``group_by_expert`` (graph replays)."""
    w = layer.mlp.experts
    _, ids, _ = routed(tokens, w.num_experts, w.hidden, layer.mlp.top_k)
    block = grouped_config(ids.numel(), w.num_experts).block
    return time_calls([lambda: group_by_expert(ids, w.num_experts, block).order], samples=10).median_us


def expert_bytes(layer) -> int:
    w = layer.mlp.experts
    return sum(t.blocks.numel() * t.blocks.element_size() + t.scales.numel() for t in (w.glu, w.linear, w.down))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--context", type=int, default=1152, help="tokens per sequence (1024 prompt + 128 decoded)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--top", type=int, default=16)
    parser.add_argument("--skip-moe", action="store_true")
    args = parser.parse_args()
    batches = [int(s) for s in args.batches.split(",")]
    core, model = eager_core(args.layers, max(batches), max(batches) * (args.context + 32))
    runner, layer = core.runner, model.layers[0]
    copy = copy_bandwidth(torch.device("cuda"))
    floor_us = expert_bytes(layer) / copy * 1e6
    lines = [f"Device: {torch.cuda.get_device_name()}; copy {copy / 1e9:.0f} GB/s; one layer's experts "
             f"{expert_bytes(layer) / 1e6:.0f} MB = {floor_us:.1f} us at that bandwidth", ""]
    report: dict = {"device": torch.cuda.get_device_name(), "copy_gbs": copy / 1e9, "moe_floor_us": floor_us}
    try:
        for b in batches:
            batch = prefill_batch(runner, b, args.context, seed=7 * b, start=args.context - 1)
            runner.execute(batch)  # compiles
            ms = interleaved({"step": lambda batch=batch: runner.execute(batch)}, args.repeats)["step"]
            rows, gpu_ms = top_kernels(lambda batch=batch: runner.execute(batch), args.top)
            report[f"step_{b}"] = {"ms": ms, "kernels_ms": gpu_ms, "top": rows}
            lines += [f"Decode step, {b} sequences x {args.context} tokens: {ms:.2f} ms eager (median of "
                      f"{args.repeats}), {gpu_ms:.2f} ms of kernels", "", "| kernel | ms | calls | share |",
                      "|---|---:|---:|---:|"]  # fmt: skip
            lines += [f"| `{r['kernel']}` | {r['ms']:.3f} | {r['calls']} | {r['ms'] / gpu_ms:.0%} |" for r in rows]
            lines.append("")
            if not args.skip_moe:
                cands = moe_candidates(layer, b)
                report[f"moe_{b}"] = cands
                report[f"grouping_{b}"] = grouped = grouping(layer, b)
                lines += [f"group_by_expert at {4 * b} pairs: {grouped:.1f} us", ""]
                lines += [f"One MoE layer, {b} tokens ({4 * b} pairs), grouped path; floor {floor_us:.1f} us; CUDA-graph replays", "",
                          "| tiles | us | / floor | rel. L2 vs default |", "|---|---:|---:|---:|"]
                lines += [f"| {n} | {us:.1f} | {us / floor_us:.2f} | {r:.1e} |" for n, (us, r) in cands.items()]
                lines.append("")
            print("\n".join(lines), flush=True)
            lines = []
    finally:
        asyncio.run(core.close())
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "engine_decode_step.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
