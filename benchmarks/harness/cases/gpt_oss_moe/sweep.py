"""Tile sweep of the MoE grouped path at decode-batch sizes, against its peers, in one GPU run.

    python3 -m benchmarks.harness.cases.gpt_oss_moe.sweep [--m 256,64,1024] [--budget-s 100] [--peers]

One gpt-oss-20b layer's experts (the ``gpt_oss_moe`` case's weights), fma8 codes as the
engine loads them. Every row is the median of CUDA-graph replays (``timing.time_calls``)
rotating over 4 token/routing sets, its error against torch bf16 on the same inputs, and
the floor: the used experts' MXFP4 bytes over the copy bandwidth measured in the same run.
Every ``m`` runs torch bf16 and every candidate of ``candidates``; ``--peers`` adds the other
paths. Rows past ``--budget-s`` are skipped (compiling is the run's main cost). Writes
``sweep.txt`` to ``$OUT`` when set.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.harness import load_case, measure_ceilings
from benchmarks.harness.timing import time_calls
from quartet.kernels.mxfp4.moe import GroupedConfig, GroupedTiles, grouped_tiles, mxfp4_moe_triton
from quartet.kernels.mxfp4.moe_grouped import grouped_config
from quartet.kernels.mxfp4.moe_layout import group_by_expert

SETS = 4


def candidates(pairs: int, experts: int) -> dict[str, GroupedConfig]:
    """The default tiles (``grouped_config``) against their neighbours: with the weight on the
    other side, and at 64-row tiles 32-row ones with the weight on the left (the fastest tiles
    at 512 pairs in run 5). Run 5 also had the unpaired tiles below 256 pairs, eight warps and
    eight warps over 128-wide K steps at 1024 pairs (all slower; docs/perf-log/kernels-mxfp4.md)."""
    base = grouped_config(pairs, experts)
    out = {"default": base}
    if base.pair_rows:
        out["wright" if base.w_left else "wleft"] = dataclasses.replace(base, w_left=not base.w_left)
    if base.block == 64:
        out["blk32_wleft"] = dataclasses.replace(base, block=32, w_left=True)
    return out


def _torch_grouping(fn: Callable[[dict], torch.Tensor]) -> Callable[[dict], torch.Tensor]:
    """``fn`` with the MoE grouping done by the torch ops (as before run 5), for comparison."""
    import quartet.kernels.mxfp4.moe as moe

    def run(s: dict) -> torch.Tensor:
        saved = moe.group_by_expert
        moe.group_by_expert = lambda ids, e, block: group_by_expert(ids, e, block, impl="torch")
        try:
            return fn(s)
        finally:
            moe.group_by_expert = saved

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", default="256,64,1024", help="tokens per call (pairs = 4 x m)")
    parser.add_argument("--peers", action="store_true", help="also the earlier tiles, decode and dense_cublas")
    parser.add_argument("--budget-s", type=float, default=100.0)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args(argv)
    began = time.monotonic()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the CPU: a smoke run, interpreted
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                              "clocks.max.mem", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        smi = "no nvidia-smi"
    ceil = measure_ceilings(device)
    lines = [f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; device {smi}; torch {torch.__version__}",
             f"copy {ceil.copy_gbps:.0f} GB/s, bf16 matmul {ceil.matmul_tflops:.0f} TFLOP/s",
             f"{'m':>5} {'pairs':>5} {'variant':<22} {'us':>8} {'floor':>7} {'x floor':>7} {'rel err':>8}"]
    print("\n".join(lines), flush=True)

    case = load_case("gpt_oss_moe")
    model = case.model
    gen = torch.Generator(device=device)
    gen.manual_seed(case.manifest.seed)
    base = model.prepare({**model.make_weights(gen, device), **model.make_activations(1, gen, device)})
    for m in (int(v) for v in args.m.split(",") if v):
        pairs = m * model.top_k
        shaped = {**base, "x": base["x"].new_empty((m, model.h)), "logits": base["logits"].new_empty((m, model.e))}
        sets = [model.rotate(shaped, 100 * m + i) for i in range(SETS)]
        _, bf16 = model.baseline(m)
        refs = [bf16(s).float() for s in sets]

        def run(fn: Callable[[dict], torch.Tensor]) -> tuple[float, float]:
            outs = [fn(s) for s in sets]  # the grouping rows return the pair order: no error to show
            err = max(((o.float() - r).norm() / r.norm()).item() if o.shape == r.shape else float("nan")
                      for o, r in zip(outs, refs))
            return time_calls([lambda s=s: fn(s) for s in sets], samples=args.samples).median_us, err

        def call(path: str, config: object = None) -> Callable[[dict], torch.Tensor]:
            return lambda s: mxfp4_moe_triton(s["x"], s["ids"], s["weights"], s["fma8"], path=path, config=config)

        variants: dict[str, Callable[[dict], torch.Tensor]] = {"torch_bf16": bf16}
        if args.peers:
            if pairs <= 256:
                variants["decode"] = call("decode")
            if pairs >= 512:
                variants["dense_cublas"] = call("dense_cublas")
            old = grouped_tiles(pairs, model.e)
            variants["old_grouped_bk64"] = call("grouped", GroupedTiles(block=old.block, bk_h=64, bk_i=64))
        variants |= {name: call("grouped", config) for name, config in candidates(pairs, model.e).items()}
        variants["default_torch_grouping"] = _torch_grouping(call("grouped"))
        block = grouped_config(pairs, model.e).block
        for impl in ("torch", "triton"):  # the grouping alone
            variants[f"grouping_{impl}"] = (
                lambda s, impl=impl: group_by_expert(s["ids"], model.e, block, impl=impl).order)
        floor = case.model.floor_us(m, ceil)
        for name, fn in variants.items():
            if time.monotonic() - began > args.budget_s:
                lines.append(f"{m:>5} {pairs:>5} {name:<22} skipped: past the {args.budget_s:.0f} s budget")
                print(lines[-1], flush=True)
                continue
            try:
                us, err = run(fn)
                row = f"{m:>5} {pairs:>5} {name:<22} {us:8.1f} {floor:7.1f} {us / floor:7.2f} {err:8.1e}"
            except Exception as exc:  # a config the compiler rejects is a data point, not a crash
                row = f"{m:>5} {pairs:>5} {name:<22} error: {type(exc).__name__}: {str(exc)[:160]}"
            lines.append(row)
            print(row, flush=True)
        torch.cuda.empty_cache()
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "sweep.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
