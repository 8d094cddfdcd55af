"""Row-major "fma8" against tiled "fma8t" codes (``quartet.kernels.mxfp4.layout``), one run.

    QUARTET_KERNELS_AUTOTUNE=0 python -m benchmarks.harness.layout_compare [--tokens 1,2,4]
        [--shapes 28672x8192,2880x2880] [--batch-rows 8,64,2048] [--batch-tokens 64,256,2048]

For each layout: the one-row GEMV (the default and the tensor-core launches of ``GEMV_MMA``)
and the gpt-oss-20b MoE decode layer at ``--tokens`` (defaults, the CUDA-core kernels and the
``MOE_MMA`` launches); with ``--batch-rows`` / ``--batch-tokens`` also ``mxfp4_linear`` and
``mxfp4_moe`` at their default kernels for those rows and tokens. Outputs on the two layouts
should match: a row says ``DIFF`` and the largest difference otherwise (the CUDA-core MoE decode
at two tokens and more differs in the last fp32 bits, its sums taken in another order). Timing
as in ``sweep.py``: CUDA-graph replays over weight copies or routings that exceed L2, median of
10 samples; the floor is the bytes read over the copy bandwidth measured in the same run. A
benchmark, not a test (docs/perf-log/kernels-mxfp4.md, kernels run H).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from benchmarks.harness.ceilings import probe_start
from benchmarks.harness.sweep import _moe_layer, _MoERows, _routings, linear_weights
from benchmarks.harness.timing import time_calls

# (warps, rows a thread, groups a K slice, groups ahead, hint[, register cap]); groups 0 = the whole row.
GEMV_MMA = {(28672, 8192): [(4, 2, 4, 1, 1), (4, 2, 4, 2, 1), (2, 2, 4, 2, 1), (4, 1, 4, 2, 1), (4, 2, 8, 2, 1),
                            (4, 2, 2, 2, 1), (8, 1, 4, 2, 1), (4, 2, 4, 2, 1, 128)],
            (2880, 2880): [(1, 1, 6, 2, 1), (2, 1, 3, 1, 1), (1, 1, 6, 1, 1), (1, 2, 3, 1, 1)]}
MOE_MMA = [((2, 2, 3, 2, 1), (4, 1, 3, 2, 1)), ((2, 2, 3, 1, 1), (4, 1, 3, 1, 1)), ((4, 2, 3, 1, 1), (4, 1, 3, 1, 1)),
           ((2, 2, 6, 1, 1), (4, 1, 6, 1, 1)), ((4, 1, 3, 1, 1), (4, 2, 3, 1, 1)), ((2, 2, 0, 1, 1), (2, 1, 0, 1, 1)),
           ((4, 2, 6, 1, 1), (4, 2, 6, 1, 1)), ((2, 1, 6, 1, 1), (2, 1, 6, 1, 1))]


def _mma(c: tuple, k_blocks: int):
    from quartet.kernels.mxfp4._fma import MmaConfig

    return MmaConfig(num_warps=c[0], rpt=c[1], groups=c[2] or -(-k_blocks // 4), prefetch=c[3], hint=c[4],
                     max_regs=c[5] if len(c) > 5 else None)


def _same(a: torch.Tensor, b: torch.Tensor) -> str:
    return "" if torch.equal(a, b) else f"  DIFF max {(a.float() - b.float()).abs().max().item():.3g}"


def compare_gemv(device: torch.device, copy_gbps: float, shapes: list[tuple[int, int]]) -> None:
    from quartet.kernels.mxfp4.gemv import mxfp4_gemv
    from quartet.kernels.mxfp4.layout import to_layout

    for n, k in shapes:
        gen, w, ws, dense, dense_copies = linear_weights(n, k, device)
        tiled = [to_layout(wi, "fma8t") for wi in ws]
        x = torch.randn((1, k), generator=gen, device=device).bfloat16()
        nbytes = w.blocks.numel() + w.scales.numel() + 2 * k + 2 * n
        floor = nbytes / copy_gbps / 1e3
        bf16 = time_calls([lambda d=d: F.linear(x, d) for d in dense_copies], samples=10).median_us
        print(f"\n{n}x{k} M=1: {nbytes / 1e6:.1f} MB, floor {floor:.2f} us, torch bf16 {bf16:.2f} us")
        print(f"{'launch':<34} {'fma8 us':>9} {'fma8t us':>9} {'% copy':>7} {'x bf16':>7}")
        cands = [("default", None, None), ("fma default", "fma", None)]
        cands += [(f"mma {c}", "mma", _mma(c, k // 32)) for c in GEMV_MMA.get((n, k), [])]
        for label, variant, cfg in cands:
            try:
                ref = mxfp4_gemv(x, ws[0], variant=variant, config=cfg)
                out = mxfp4_gemv(x, tiled[0], variant=variant, config=cfg)
                us = [time_calls([lambda wi=wi: mxfp4_gemv(x, wi, variant=variant, config=cfg) for wi in group],
                                 samples=10).median_us for group in (ws, tiled)]
                print(f"{label:<34} {us[0]:9.2f} {us[1]:9.2f} {100 * floor / us[1]:6.1f}% {bf16 / us[1]:6.2f}x"
                      f"{_same(ref, out)}", flush=True)
            except Exception as exc:  # a config the compiler rejects is a data point, not a crash
                print(f"{label:<34} error: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
        del ws, tiled, dense_copies, dense
        torch.cuda.empty_cache()


def compare_moe(device: torch.device, copy_gbps: float, tokens: list[int]) -> None:
    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma

    dims = (32, 2880, 2880, 4)
    w, gen, _ = _moe_layer(device, dims)
    wt = w.to_layout("fma8t")
    kb = dims[1] // 32
    for t in tokens:
        lines: list[str] = []
        rows = _MoERows(t, _routings(t, dims, gen, device), w, dims, copy_gbps, lines)
        cands = [("default", {}), ("cuda cores default", {"cuda_cores": True})]
        cands += [(f"mma gu {g} dn {d}", {"config": _mma(g, kb), "down_config": _mma(d, kb)}) for g, d in MOE_MMA]
        for label, opts in cands:
            for name, weights in (("fma8", w), ("fma8t", wt)):
                rows.row(f"T={t} {name} {label}",
                         lambda x, ids, wts, weights=weights, opts=opts: moe_decode_fma(x, ids, wts, weights, 1.702,
                                                                                         7.0, **opts))
            a = moe_decode_fma(*rows.inputs[0], w, 1.702, 7.0, **opts)
            b = moe_decode_fma(*rows.inputs[0], wt, 1.702, 7.0, **opts)
            if not torch.equal(a, b):
                rows.add_line(f"   fma8t output differs from fma8: {_same(a, b)}")


def compare_batches(device: torch.device, copy_gbps: float, shapes: list[tuple[int, int]], rows: list[int],
                    tokens: list[int]) -> None:
    """The other readers at their default launches: ``mxfp4_linear`` at several rows (dequant_dot,
    the skinny GEMM, dequantize + cuBLAS) and ``mxfp4_moe`` at decode-batch and prefill token counts
    (the grouped and dense paths)."""
    from quartet.kernels.mxfp4.layout import to_layout
    from quartet.kernels.mxfp4.ops import mxfp4_linear, mxfp4_moe

    for n, k in shapes:
        gen, w, ws, dense, dense_copies = linear_weights(n, k, device)
        tiled = [to_layout(wi, "fma8t") for wi in ws]
        print(f"\n{n}x{k}: mxfp4_linear at its default kernel")
        print(f"{'rows':<34} {'fma8 us':>9} {'fma8t us':>9} {'torch bf16':>10}")
        for m in rows:
            x = torch.randn((m, k), generator=gen, device=device).bfloat16()
            bf16 = time_calls([lambda d=d: F.linear(x, d) for d in dense_copies], samples=10).median_us
            ref, out = mxfp4_linear(x, ws[0]), mxfp4_linear(x, tiled[0])
            us = [time_calls([lambda wi=wi: mxfp4_linear(x, wi) for wi in group], samples=10).median_us
                  for group in (ws, tiled)]
            print(f"{f'M={m}':<34} {us[0]:9.2f} {us[1]:9.2f} {bf16:10.2f}{_same(ref, out)}", flush=True)
        del ws, tiled, dense_copies, dense
        torch.cuda.empty_cache()
    dims = (32, 2880, 2880, 4)
    w, gen, _ = _moe_layer(device, dims)
    wt = w.to_layout("fma8t")
    for t in tokens:
        lines: list[str] = []
        moe_rows = _MoERows(t, _routings(t, dims, gen, device), w, dims, copy_gbps, lines)
        for name, weights in (("fma8", w), ("fma8t", wt)):
            moe_rows.row(f"T={t} {name} mxfp4_moe default",
                         lambda x, ids, wts, weights=weights: mxfp4_moe(x, ids, wts, weights))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="1,2,4")
    parser.add_argument("--shapes", default="28672x8192,2880x2880")
    parser.add_argument("--batch-rows", default="", help="also time mxfp4_linear at these rows, e.g. 8,64,2048")
    parser.add_argument("--batch-tokens", default="", help="also time mxfp4_moe at these tokens, e.g. 64,256")
    args = parser.parse_args(argv)
    device, copy_gbps, shapes = probe_start(args.shapes)
    compare_gemv(device, copy_gbps, shapes)  # type: ignore[arg-type]
    compare_moe(device, copy_gbps, [int(t) for t in args.tokens.split(",") if t])
    if args.batch_rows or args.batch_tokens:
        compare_batches(device, copy_gbps, shapes, [int(m) for m in args.batch_rows.split(",") if m],  # type: ignore
                        [int(t) for t in args.batch_tokens.split(",") if t])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
