"""Kernel table of a gpt-oss-20b decode step at batch 64-256: the dense linears, then the MoE.

    python3 -m benchmarks.harness.decode_step [--m 64,256] [--wide-m 512,1024] [--shapes qkv,o,unembed]
                                           [--moe-m 64,128,256] [--budget-s 150] [--no-moe]
                                           [--compile first|only|skip]

Dense linears at the gpt-oss shapes (qkv 5120x2880, o 2880x4096, unembedding 201088x2880,
also at ``--wide-m`` rows), fma8 codes as the engine loads them, M rows of bf16 activations. Rows per (shape, m): torch
bf16 on the dequantized weight (the peer), the paths the dispatcher has used at these rows
(``gemm`` ``dequant_cublas`` and ``dequant_dot``), what ``mxfp4_linear`` runs now, and the
``gemm_skinny`` candidates. Each row is the median of CUDA-graph replays (``timing.time_calls``)
rotating over enough weight copies (twice the L2) that codes come from DRAM, its relative L2
error against torch bf16, and the floor: the larger of the MXFP4 bytes over the copy
bandwidth and the flops over the bf16 matmul rate, both measured in the same run. Then the MoE
rows of ``cases/gpt_oss_moe/sweep.py`` at ``--moe-m`` tokens (pairs = 4 x m). Writes
``decode_step.txt`` to ``$OUT`` when set.
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
import torch.nn.functional as F

from benchmarks.harness import measure_ceilings
from benchmarks.harness.models.linear import quantize_random
from benchmarks.harness.timing import time_calls
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.gemm_skinny import SkinnyConfig, mxfp4_gemm_skinny, skinny_config, split_for
from quartet.kernels.mxfp4._launch import SKINNY_WIDE_MIN_N
from quartet.kernels.mxfp4.layout import to_layout
from quartet.kernels.mxfp4.ops import dequantize, mxfp4_linear

SHAPES = {"qkv": (5120, 2880), "o": (2880, 4096), "unembed": (201088, 2880)}
L2_ROTATE_BYTES = 2 * 50 * 2**20
MAX_COPIES = 16


def skinny_candidates(m: int, n: int, k: int, sms: int = 132) -> dict[str, SkinnyConfig]:
    """The default tiles (``skinny_config``) and their neighbours: the other operand orientation;
    for tall weights from 128 rows a deeper pipeline and 256 activation rows a tile (the weight
    decoded once, not twice). Each splits K by ``split_for``. Runs 4 and 5 also timed other
    tile sizes, 128-wide K steps and no split-K (docs/perf-log/kernels-mxfp4.md, "Dense linears")."""
    base = skinny_config(m, n, k, sms)

    def cfg(**kw: object) -> SkinnyConfig:
        c = dataclasses.replace(base, **kw)
        return dataclasses.replace(c, split_k=split_for(m, n, k, sms, c.bm, c.bn, c.bk))

    out = {"skinny": base, "skinny_wleft" if not base.w_left else "skinny_wright": cfg(w_left=not base.w_left)}
    if base.bm == 128:
        out["skinny_st4"] = cfg(num_stages=4)
        if m > 128:
            out["skinny_bm256"] = cfg(bm=256, bn=64, num_warps=8)
    return out


def precompile(jobs: list[tuple], workers: int = 12) -> None:
    """Compile every candidate in parallel processes (one process compiles one kernel at a time),
    so the timed loop finds them in Triton's disk cache. A job is ``("linear", k, m, SkinnyConfig)``
    or ``("moe", GroupedConfig)``; each runs its kernel once on a few rows with the real K (and
    the real H and I), so the integer arguments specialize as in the timed calls."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        for fut in [pool.submit(_compile_one, job) for job in jobs]:
            try:
                fut.result()
            except Exception as exc:  # the timed loop reports the failing config
                print(f"precompile: {type(exc).__name__}: {str(exc)[:120]}", flush=True)


def _compile_one(job: tuple) -> None:
    device = torch.device("cuda")
    codes = lambda *shape: torch.randint(0, 256, shape, dtype=torch.uint8, device=device)  # noqa: E731
    scales = lambda *shape: torch.randint(110, 125, shape, dtype=torch.uint8, device=device)  # noqa: E731
    if job[0] == "linear":
        _, k, m, cfg = job
        w = MXFP4Tensor(codes(128, k // 32, 16), scales(128, k // 32), k, "fma8")
        mxfp4_gemm_skinny(torch.randn((m, k), device=device).bfloat16(), w, config=cfg)
    else:
        from quartet.kernels.mxfp4.moe import mxfp4_moe_triton
        from quartet.kernels.mxfp4.moe_layout import MoEWeights
        from quartet.kernels.mxfp4.reference import route_torch

        cfg, e, h = job[1], 4, 2880
        mx = lambda n: MXFP4Tensor(codes(e, n, h // 32, 16), scales(e, n, h // 32), h, "fma8")  # noqa: E731
        bias = lambda n: torch.zeros((e, n), device=device)  # noqa: E731
        w = MoEWeights(mx(h), mx(h), mx(h), bias(h), bias(h), bias(h))
        ids, wts = route_torch(torch.randn((8, e), device=device), 4)
        mxfp4_moe_triton(torch.randn((8, h), device=device).bfloat16(), ids, wts, w, path="grouped", config=cfg)
    torch.cuda.synchronize()


def _smi() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                               "clocks.max.mem", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "no nvidia-smi"


def linear_rows(shape_ms: dict[str, list[int]], copy_gbps: float, tflops: float, budget_s: float,
                began: float) -> list[str]:
    from quartet.kernels.mxfp4.gemm import mxfp4_gemm

    lines = [f"{'shape':<8} {'m':>4} {'variant':<20} {'us':>9} {'floor':>7} {'x floor':>7} {'vs cur':>6} "
             f"{'rel err':>8}"]
    print(lines[0], flush=True)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(2026)
    for name, ms in shape_ms.items():
        n, k = SHAPES[name]
        q = quantize_random((n, k), gen, torch.device("cuda"))
        w = to_layout(MXFP4Tensor(q["blocks"], q["scales"], k), "fma8")
        copies = max(1, min(MAX_COPIES, -(-L2_ROTATE_BYTES // w.nbytes)))
        ws = [w] + [MXFP4Tensor(w.blocks.clone(), w.scales.clone(), k, "fma8") for _ in range(copies - 1)]
        dense = dequantize(w, torch.bfloat16)
        bf16_copies = max(1, min(MAX_COPIES, -(-L2_ROTATE_BYTES // (dense.numel() * 2))))
        dense_ws = [dense] + [dense.clone() for _ in range(bf16_copies - 1)]
        for m in ms:
            xs = [torch.randn((m, k), generator=gen, device="cuda").bfloat16() for _ in range(len(ws))]
            ref = F.linear(xs[0], dense).float()
            floor = max((w.nbytes + m * k * 2 + m * n * 2) / (copy_gbps * 1e3), 2 * m * n * k / (tflops * 1e6))
            variants: dict[str, Callable[[torch.Tensor, MXFP4Tensor], torch.Tensor]] = {
                "dequant_cublas": lambda x, w: mxfp4_gemm(x, w, variant="dequant_cublas"),
                "gemm_dequant_dot": lambda x, w: mxfp4_gemm(x, w, variant="dequant_dot"),
                "mxfp4_linear": mxfp4_linear,
            }
            variants |= {label: (lambda x, w, c=cfg: mxfp4_gemm_skinny(x, w, config=c))
                         for label, cfg in skinny_candidates(m, n, w.k_padded).items()}
            bf16_us = time_calls([lambda i=i: F.linear(xs[i % len(xs)], dense_ws[i]) for i in range(len(dense_ws))],
                                 samples=10).median_us
            row = f"{name:<8} {m:>4} {'torch_bf16':<20} {bf16_us:9.1f} {floor:7.1f} {bf16_us / floor:7.2f}"
            lines.append(row)
            print(row, flush=True)
            current = None
            for label, fn in variants.items():
                if time.monotonic() - began > budget_s:
                    lines.append(f"{name:<8} {m:>4} {label:<20} skipped: past the {budget_s:.0f} s budget")
                    continue
                try:
                    err = ((fn(xs[0], ws[0]).float() - ref).norm() / ref.norm()).item()
                    us = time_calls([lambda i=i: fn(xs[i], ws[i]) for i in range(len(ws))], samples=10).median_us
                    if label in ("dequant_cublas", "gemm_dequant_dot"):  # the paths used before
                        current = us if current is None else min(current, us)
                    vs = f"{current / us:6.2f}" if current else "      "
                    row = f"{name:<8} {m:>4} {label:<20} {us:9.1f} {floor:7.1f} {us / floor:7.2f} {vs} {err:8.1e}"
                except Exception as exc:  # a config the compiler rejects is a data point, not a crash
                    row = f"{name:<8} {m:>4} {label:<20} error: {type(exc).__name__}: {str(exc)[:160]}"
                lines.append(row)
                print(row, flush=True)
        del ws, dense, dense_ws
        torch.cuda.empty_cache()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", default="64,256", help="activation rows of the dense linears")
    parser.add_argument("--shapes", default="unembed,qkv,o", help=f"any of {sorted(SHAPES)}")
    parser.add_argument("--wide-m", default="512,1024", help="more rows for the unembedding alone")
    parser.add_argument("--moe-m", default="64,128,256", help="tokens of the MoE rows (pairs = 4 x m)")
    parser.add_argument("--budget-s", type=float, default=150.0, help="rows past this many seconds are skipped")
    parser.add_argument("--no-moe", action="store_true")
    parser.add_argument("--compile", choices=("first", "only", "skip"), default="first",
                        help="compile the candidates in parallel first (default), only that, or not at all")
    args = parser.parse_args(argv)
    began = time.monotonic()
    if not torch.cuda.is_available():
        raise SystemExit("decode_step times CUDA kernels; no CUDA device here")
    shapes = [s for s in args.shapes.split(",") if s]
    ms = [int(v) for v in args.m.split(",") if v]
    wide_ms = [int(v) for v in args.wide_m.split(",") if v]
    shape_ms = {s: ms + (wide_ms if SHAPES[s][0] >= SKINNY_WIDE_MIN_N else []) for s in shapes}
    jobs: list[tuple] = [("linear", SHAPES[s][1], m, cfg) for s in shapes for m in shape_ms[s]
                         for cfg in skinny_candidates(m, *SHAPES[s]).values()]
    if not args.no_moe:
        from benchmarks.harness.cases.gpt_oss_moe.sweep import candidates

        jobs += [("moe", cfg) for m in args.moe_m.split(",") if m for cfg in candidates(4 * int(m), 32).values()]
    if args.compile != "skip":
        precompile(list(dict.fromkeys(jobs)))
        print(f"precompiled {len(jobs)} kernels in {time.monotonic() - began:.0f} s", flush=True)
    if args.compile == "only":
        return 0
    ceil = measure_ceilings(torch.device("cuda"))
    lines = [f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; device {_smi()}; torch {torch.__version__}",
             f"copy {ceil.copy_gbps:.0f} GB/s, bf16 matmul {ceil.matmul_tflops:.0f} TFLOP/s"]
    print("\n".join(lines), flush=True)
    lines += linear_rows(shape_ms, ceil.copy_gbps, ceil.matmul_tflops, args.budget_s, began)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "decode_step.txt").write_text("\n".join(lines) + "\n")
    if not args.no_moe:
        from benchmarks.harness.cases.gpt_oss_moe.sweep import main as moe_sweep

        left = max(10.0, args.budget_s - (time.monotonic() - began))
        moe_sweep(["--m", args.moe_m, "--budget-s", f"{left:.0f}", "--samples", "10"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
