"""Launch-config sweep of the tensor-core decode (``_dec2_mma.py``): how ``_fma.MmaConfig``'s defaults
(``moe_mma_defaults``, ``gemv_mma_default``) were chosen; the timing method (CUDA-graph replay over rotated
weight copies, checks against torch bf16) is ``sweep.py``'s.

    python -m benchmarks.harness.sweep_mma [--tokens 1,2,4,8] [--shapes 28672x8192,2880x2880] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.harness.ceilings import measure_copy_gbps
from benchmarks.harness.sweep import (_MOE_HEADER, _kernel_split, _moe_layer, _MoERows, _rel_err, _routings, _row,
                                     linear_weights)
from benchmarks.harness.timing import time_calls


# Tensor-core decode (_dec2_mma.py) candidates: (warps, rows a thread, groups of 4 blocks a K slice (0 = whole
# row), groups loaded ahead, load hints[, register cap]). H100 runs F1/F2 (docs/perf-log/kernels-mxfp4.md):
# whole rows were 1.7-3x slower than 8-12-block slices; two groups ahead and a register cap changed little.
MMA_GATE_UP = [(2, 2, 3, 2, 0), (2, 2, 3, 2, 1), (4, 2, 3, 2, 1), (4, 1, 3, 2, 1), (4, 1, 2, 2, 1), (4, 2, 2, 2, 1),
               (2, 2, 2, 2, 1), (4, 1, 6, 2, 1)]
MMA_DOWN = [(4, 1, 3, 2, 0), (4, 1, 3, 2, 1), (4, 1, 2, 2, 1), (2, 1, 3, 2, 1), (4, 2, 3, 2, 1), (4, 1, 6, 2, 1),
            (2, 1, 6, 2, 1)]
MMA_LARGE = [(4, 1, 4, 2, 0), (4, 1, 4, 2, 1), (4, 1, 8, 2, 1), (4, 2, 4, 2, 1), (4, 1, 2, 2, 1), (4, 2, 8, 2, 1),
             (4, 1, 6, 2, 1)]
MMA_SMALL = [(2, 1, 3, 2, 0), (2, 1, 3, 2, 1), (1, 1, 3, 2, 1), (1, 1, 6, 2, 1), (2, 1, 2, 2, 1), (4, 1, 3, 2, 1)]


def _mma(c: tuple, k_blocks: int):
    from quartet.kernels.mxfp4._fma import MmaConfig

    return MmaConfig(num_warps=c[0], rpt=c[1], groups=c[2] or -(-k_blocks // 4), prefetch=c[3], hint=c[4],
                     max_regs=c[5] if len(c) > 5 else None)


def _compile_mma(kind: str, dims: tuple, cg: tuple, cd: tuple) -> None:
    """One compile in a worker process (``_precompile_mma``)."""
    device = torch.device("cuda")
    if kind == "moe":
        from quartet.kernels.mxfp4.moe_decode import moe_decode_fma
        from quartet.kernels.mxfp4.reference import route_torch

        w, gen, _ = _moe_layer(device, (4, *dims[1:]))
        x = torch.randn((1, dims[1]), generator=gen, device=device).bfloat16()
        ids, wts = route_torch(torch.randn((1, 4), generator=gen, device=device), dims[3])
        moe_decode_fma(x, ids.to(torch.int32), wts, w, 1.702, 7.0, _mma(cg, dims[1] // 32), _mma(cd, dims[2] // 32))
    else:
        from quartet.kernels.mxfp4.format import quantize_torch
        from quartet.kernels.mxfp4.gemv import mxfp4_gemv
        from quartet.kernels.mxfp4.layout import to_layout

        n, k = dims
        w = to_layout(quantize_torch(torch.randn((n, k), device=device) * 0.02), "fma8")
        mxfp4_gemv(torch.randn((1, k), device=device).bfloat16(), w, variant="mma", config=_mma(cg, k // 32))
    torch.cuda.synchronize()


def _precompile_mma(jobs: list[tuple]) -> None:
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(14, len(jobs)), mp_context=ctx) as pool:
        for fut in [pool.submit(_compile_mma, *job) for job in jobs]:
            try:
                fut.result()
            except Exception as exc:  # the timed loop reports the failing config
                print(f"precompile: {type(exc).__name__}: {str(exc)[:200]}", flush=True)


def sweep_mma_moe(device: torch.device, tokens: Sequence[int], copy_gbps: float,
                  dims: tuple[int, int, int, int] = (32, 2880, 2880, 4)) -> list[str]:
    """MoE decode: the CUDA-core fixed defaults (the baseline), the tensor-core defaults, then at one
    token every gate_up candidate (down fixed), every down candidate (best gate_up); at more tokens
    the three best of each from one token. torch bf16 at one token."""
    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma

    kb_h, kb_i = dims[1] // 32, dims[2] // 32
    _precompile_mma([("moe", dims, g, MMA_DOWN[0]) for g in MMA_GATE_UP]
                    + [("moe", dims, MMA_GATE_UP[0], d) for d in MMA_DOWN[1:]])
    w, gen, dense = _moe_layer(device, dims, with_bf16=True)
    lines = [_MOE_HEADER]
    os.environ["QUARTET_KERNELS_AUTOTUNE"] = "0"
    run = lambda cg, cd: (lambda x, ids, wts: moe_decode_fma(x, ids, wts, w, 1.702, 7.0,  # noqa: E731
                                                               _mma(cg, kb_h), _mma(cd, kb_i)))
    best_gu: list[tuple] = list(MMA_GATE_UP)
    best_dn: list[tuple] = list(MMA_DOWN)
    for t in tokens:
        rows = _MoERows(t, _routings(t, dims, gen, device), w, dims, copy_gbps, lines)
        rows.row(f"T={t} cuda-core fixed defaults (before)",
                 lambda x, ids, wts: moe_decode_fma(x, ids, wts, w, 1.702, 7.0, cuda_cores=True))
        rows.row(f"T={t} mma defaults", lambda x, ids, wts: moe_decode_fma(x, ids, wts, w, 1.702, 7.0))
        gus = best_gu if t == 1 else best_gu[:3]
        timed = sorted((rows.row(f"T={t} mma gu {g} dn {best_dn[0]}", run(g, best_dn[0])), g) for g in gus)
        gu = timed[0][1]
        dns = best_dn if t == 1 else best_dn[:3]
        timed_dn = sorted((rows.row(f"T={t} mma gu {gu} dn {d}", run(gu, d)), d) for d in dns if d != best_dn[0])
        if t == 1:
            best_gu = [g for _, g in timed]
            best_dn = [best_dn[0]] + [d for _, d in timed_dn]
            lines += _bf16_moe_row(rows.inputs, dense, rows.nbytes, rows.floor)
            lines += _kernel_split(rows.inputs, w) + _kernel_split(rows.inputs, w, cuda_cores=True)
    return lines


def sweep_mma_linear(device: torch.device, shapes: Sequence[tuple[int, int]], copy_gbps: float) -> list[str]:
    """GEMV at one row: torch bf16, the CUDA-core fma variant at its fixed default (the baseline),
    the tensor-core mma default and candidates; the ceiling is the op's bytes over ``copy_gbps``."""
    from quartet.kernels.mxfp4.gemv import mxfp4_gemv

    grids = {s: (MMA_LARGE if s[0] * s[1] >= 64 * 2**20 else MMA_SMALL) for s in shapes}
    _precompile_mma([("linear", s, c, None) for s in shapes for c in grids[s]])
    os.environ["QUARTET_KERNELS_AUTOTUNE"] = "0"
    lines = [f"{'M=1 shape variant (warps,rpt,groups)':<44} {'us':>9} {'GB/s':>7} vs bf16  % copy"]
    for n, k in shapes:
        gen, w, ws, dense, dense_copies = linear_weights(n, k, device)
        code_bytes = w.blocks.numel() + w.scales.numel()
        x = torch.randn((1, k), generator=gen, device=device).bfloat16()
        ref = F.linear(x, dense)
        bf16 = time_calls([lambda d=d: F.linear(x, d) for d in dense_copies], samples=10).median_us
        nbytes = code_bytes + k * 2 + n * 2
        lines.append(f"{n}x{k} torch_bf16 {bf16:.2f} us; ceiling {nbytes / copy_gbps / 1e3:.2f} us")
        print(lines[-1], flush=True)
        cands = [("fma fixed default (before)", "fma", None), ("mma default", "mma", None)]
        if n * k >= 64 * 2**20:
            cands.append(("fma autotuned", "fma-tuned", None))
        cands += [(f"mma {c}", "mma", _mma(c, k // 32)) for c in grids[(n, k)]]
        for label, variant, cfg in cands:
            try:
                os.environ["QUARTET_KERNELS_AUTOTUNE"] = "1" if variant == "fma-tuned" else "0"
                variant = "fma" if variant == "fma-tuned" else variant
                err = _rel_err(mxfp4_gemv(x, w, variant=variant, config=cfg), ref)
                us = time_calls([lambda wi=wi: mxfp4_gemv(x, wi, variant=variant, config=cfg) for wi in ws],
                                samples=10).median_us
                os.environ["QUARTET_KERNELS_AUTOTUNE"] = "0"
                pct = 100 * nbytes / copy_gbps / 1e3 / us
                lines.append(_row(f"{n}x{k} {label}", us, err, nbytes, bf16) + f" {pct:6.1f}")
            except Exception as exc:  # a config the compiler rejects is a data point, not a crash
                lines.append(f"{n}x{k} {label:<34} error: {type(exc).__name__}: {str(exc)[:160]}")
            print(lines[-1], flush=True)
        del ws, dense_copies, dense
        torch.cuda.empty_cache()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="1,2,4,8", help="token counts of the MoE sweep")
    parser.add_argument("--shapes", default="28672x8192,2880x2880,5760x2880,2880x4096", help="GEMV shapes (M=1)")
    parser.add_argument("--out", default=os.environ.get("OUT", ""))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("the sweep needs a CUDA device")
    device = torch.device("cuda")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    copy = measure_copy_gbps(device)
    print(f"copy bandwidth {copy:.0f} GB/s", flush=True)
    lines = [f"copy bandwidth {copy:.0f} GB/s"]
    lines += sweep_mma_moe(device, [int(v) for v in args.tokens.split(",") if v], copy)
    lines += sweep_mma_linear(device, shapes, copy)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sweep_mma.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
