"""Launch-config sweep of the CUDA-core decode kernels (how ``_fma.fma_default`` was chosen).

    python -m kernels.harness.sweep [--shapes 28672x8192,2880x2880] [--m 1,2,4] [--moe] [--out DIR]

Each (shape, m, config) row is timed with CUDA-graph replay (``timing.time_calls``) while
rotating over enough weight copies (at least twice the L2 size) that the codes come from
DRAM, as in the engine where a layer's weights are long gone from L2 when it runs again.
Every row also checks its output against torch bf16 on the dequantized weight (BAD marks a
miss). torch bf16 at the same shape is timed the same way, with rotated weights.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from kernels.harness.timing import time_calls

# (bn, kw, chunks, warps, stages), by the kind of shape they suit.
LARGE = [(32, 128, 4, 4, 1), (32, 128, 8, 4, 1), (16, 128, 8, 4, 1), (64, 128, 4, 8, 1), (32, 256, 4, 8, 1),
         (32, 64, 8, 4, 1), (64, 128, 2, 4, 1), (16, 128, 4, 2, 1), (32, 128, 4, 4, 2), (8, 512, 8, 4, 1)]
SMALL = [(16, 128, 1, 4, 1), (32, 128, 1, 4, 1), (16, 64, 1, 2, 1), (32, 64, 1, 4, 1), (8, 128, 1, 4, 1),
         (16, 128, 2, 4, 1), (32, 32, 1, 2, 1), (8, 512, 1, 4, 1), (4, 512, 1, 4, 1), (16, 512, 1, 4, 1)]
ROWS = [(16, 128, 2, 4, 1), (8, 128, 4, 4, 1), (16, 64, 4, 4, 1), (32, 128, 2, 4, 1),
        (16, 128, 1, 4, 1)]
MOE_GATE_UP = [(16, 128, 1, 4, 1), (32, 128, 1, 4, 1), (16, 64, 1, 2, 1), (8, 128, 2, 4, 1), (16, 128, 2, 4, 1),
               (8, 512, 1, 4, 1)]
MOE_DOWN = [(16, 128, 1, 4, 1), (8, 128, 1, 4, 1), (16, 64, 1, 2, 1), (32, 128, 1, 4, 1), (8, 512, 1, 4, 1)]
L2_ROTATE_BYTES = 2 * 50 * 2**20


def _copies(nbytes: int, cap: int = 24) -> int:
    return max(1, min(cap, -(-L2_ROTATE_BYTES // max(1, nbytes))))


def _row(label: str, us: float, err: float, nbytes: int, bf16_us: float | None) -> str:
    bad = "" if err < 1e-2 else f"  BAD rel.err {err:.1e}"
    vs = f"{bf16_us / us:6.2f}x" if bf16_us else "      "
    return f"{label:<44} {us:9.2f} {nbytes / us / 1e3:7.0f} {vs}{bad}"


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-30)).item()


def sweep_linear(shapes: Sequence[tuple[int, int]], ms: Sequence[int], device: torch.device) -> list[str]:
    from kernels.mxfp4._fma import FmaConfig
    from kernels.mxfp4.format import quantize_torch
    from kernels.mxfp4.gemv import mxfp4_gemv
    from kernels.mxfp4.layout import to_layout
    from kernels.mxfp4.ops import dequantize

    lines = [f"{'shape m variant config(bn,kw,chunks,warps,stages)':<44} {'us':>9} {'GB/s':>7} vs bf16"]
    for n, k in shapes:
        gen = torch.Generator(device=device)
        gen.manual_seed(n * 7 + k)
        w = to_layout(quantize_torch(torch.randn((n, k), generator=gen, device=device) * 0.02), "fma8")
        code_bytes = w.blocks.numel() + w.scales.numel()
        ws = [w] + [type(w)(w.blocks.clone(), w.scales.clone(), w.k, w.layout) for _ in range(_copies(code_bytes) - 1)]
        dense = dequantize(to_layout(w, "ocp"))
        n_bf16 = _copies(dense.numel() * 2, cap=8)
        dense_copies = [dense] + [dense.clone() for _ in range(n_bf16 - 1)]
        grid = LARGE if n * k >= 64 * 2**20 else SMALL
        for m in ms:
            x = torch.randn((m, k), generator=gen, device=device).bfloat16()
            ref = F.linear(x, dense)
            bf16 = time_calls([lambda d=d: F.linear(x, d) for d in dense_copies], samples=10)
            nbytes = code_bytes + m * k * 2 + m * n * 2
            lines.append(_row(f"{n}x{k} m={m} torch_bf16", bf16.median_us, 0.0, dense.numel() * 2, None))
            configs = grid if m == 1 else ROWS
            for bn, kw, ch, wp, st in configs:
                cfg = FmaConfig(bn=bn, kw=kw, chunks=ch, num_warps=wp, num_stages=st)
                label = f"{n}x{k} m={m} fma ({bn},{kw},{ch},{wp},{st})"
                try:
                    err = _rel_err(mxfp4_gemv(x, w, variant="fma", config=cfg), ref)
                    calls: list[Callable[[], object]] = [
                        lambda wi=wi, cfg=cfg: mxfp4_gemv(x, wi, variant="fma", config=cfg) for wi in ws]
                    lines.append(_row(label, time_calls(calls, samples=10).median_us, err, nbytes, bf16.median_us))
                except Exception as exc:  # a config the compiler rejects is a data point, not a crash
                    lines.append(f"{label:<44} error: {type(exc).__name__}: {str(exc)[:100]}")
                print(lines[-1], flush=True)
            if m > 1:
                t = time_calls([lambda wi=wi: mxfp4_gemv(x, wi, variant="dequant_dot") for wi in ws], samples=10)
                err = _rel_err(mxfp4_gemv(x, w, variant="dequant_dot"), ref)
                lines.append(_row(f"{n}x{k} m={m} dequant_dot (default)", t.median_us, err, nbytes, bf16.median_us))
                print(lines[-1], flush=True)
        del ws, dense_copies, dense
        torch.cuda.empty_cache()
    return lines


def sweep_moe(device: torch.device, tokens: int = 1, dims: tuple[int, int, int, int] = (32, 2880, 2880, 4)) -> list[str]:
    """gate_up configs against a fixed down config, then down configs with the best gate_up.
    ``dims``: experts, hidden, intermediate, top-k (default: gpt-oss-20b)."""
    from kernels.mxfp4._fma import FmaConfig
    from kernels.mxfp4.format import quantize_torch
    from kernels.mxfp4.moe_decode import moe_decode_fma
    from kernels.mxfp4.moe_layout import MoEWeights
    from kernels.mxfp4.reference import mxfp4_moe_torch, route_torch

    e, h, i, top_k = dims
    gen = torch.Generator(device=device)
    gen.manual_seed(7)
    gate_up = quantize_torch(torch.randn((e, 2 * i, h), generator=gen, device=device) * 0.02)
    down = quantize_torch(torch.randn((e, h, i), generator=gen, device=device) * 0.02)
    gub = (torch.randn((e, 2 * i), generator=gen, device=device) * 0.02).bfloat16()
    db = (torch.randn((e, h), generator=gen, device=device) * 0.02).bfloat16()
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    # Different experts per call (the layer's 1.2 GB of experts is far larger than L2).
    inputs = []
    for _ in range(8):
        x = torch.randn((tokens, h), generator=gen, device=device).bfloat16()
        ids, wts = route_torch(torch.randn((tokens, e), generator=gen, device=device), top_k)
        inputs.append((x, ids, wts))
    x0, ids0, wts0 = inputs[0]
    ref = mxfp4_moe_torch(x0, ids0, wts0, w)
    nbytes = top_k * (3 * i * h // 2 + 3 * i * h // 32) + tokens * h * 4
    lines = [f"gpt-oss MoE decode, {tokens} token(s), floor {nbytes / 1e3 / 2980:.1f} us at 2980 GB/s; "
             f"configs (bn,kw,chunks,warps,stages) gate_up / down"]

    def run(cg: FmaConfig, cd: FmaConfig) -> tuple[str, float]:
        label = f"moe gu ({cg.bn},{cg.kw},{cg.chunks},{cg.num_warps}) dn ({cd.bn},{cd.kw},{cd.chunks},{cd.num_warps})"
        try:
            err = _rel_err(moe_decode_fma(x0, ids0, wts0, w, 1.702, 7.0, cg, cd), ref)
            calls = [lambda a=a, cg=cg, cd=cd: moe_decode_fma(a[0], a[1], a[2], w, 1.702, 7.0, cg, cd) for a in inputs]
            t = time_calls(calls, samples=10)
            return _row(label, t.median_us, err, nbytes, None), t.median_us
        except Exception as exc:
            return f"{label:<44} error: {type(exc).__name__}: {str(exc)[:100]}", float("inf")

    as_cfg = lambda c: FmaConfig(bn=c[0], kw=c[1], chunks=c[2], num_warps=c[3], num_stages=c[4])  # noqa: E731
    best_gu, best_t = as_cfg(MOE_GATE_UP[0]), float("inf")
    for c in MOE_GATE_UP:
        line, t = run(as_cfg(c), as_cfg(MOE_DOWN[0]))
        lines.append(line)
        print(line, flush=True)
        if t < best_t:
            best_gu, best_t = as_cfg(c), t
    for c in MOE_DOWN[1:]:
        line, _ = run(best_gu, as_cfg(c))
        lines.append(line)
        print(line, flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="28672x8192,2880x2880,5760x2880,2880x4096")
    parser.add_argument("--m", default="1,2,4")
    parser.add_argument("--moe", action="store_true", help="also sweep the MoE decode (gpt-oss-20b layer)")
    parser.add_argument("--out", default=os.environ.get("OUT", ""))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("the sweep needs a CUDA device")
    device = torch.device("cuda")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    lines = sweep_linear(shapes, [int(v) for v in args.m.split(",") if v], device)
    if args.moe:
        lines += sweep_moe(device)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sweep_decode.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
