"""Launch-config sweep of the CUDA-core decode kernels (how ``_fma.fma_default`` and
``_fma.moe_fma_defaults`` were chosen).

    python -m benchmarks.harness.sweep [--shapes 28672x8192,2880x2880] [--m 1,2,4] [--moe] [--out DIR]
    python -m benchmarks.harness.sweep --shapes "" --moe [--tokens 1,2,4,8]
    python -m benchmarks.harness.sweep --shapes "" --moe-compare [--before MODULE] [--extra "GU;DN ..."]

Each (shape, m, config) row is timed with CUDA-graph replay (``timing.time_calls``) while
rotating over enough weight copies (at least twice the L2 size) that the codes come from
DRAM, as in the engine where a layer's weights are long gone from L2 when it runs again.
Every row also checks its output against torch bf16 on the dequantized weight (BAD marks a
miss). torch bf16 at the same shape is timed the same way, with rotated weights. The MoE
rows rotate over eight routings of one gpt-oss-20b layer and compare with the bytes of the
distinct experts they touch over the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.harness.timing import time_calls

# (bn, kw, chunks, warps, stages), by the kind of shape they suit.
LARGE = [(32, 128, 4, 4, 1), (32, 128, 8, 4, 1), (16, 128, 8, 4, 1), (64, 128, 4, 8, 1), (32, 256, 4, 8, 1),
         (32, 64, 8, 4, 1), (64, 128, 2, 4, 1), (16, 128, 4, 2, 1), (32, 128, 4, 4, 2), (8, 512, 8, 4, 1)]
SMALL = [(16, 128, 1, 4, 1), (32, 128, 1, 4, 1), (16, 64, 1, 2, 1), (32, 64, 1, 4, 1), (8, 128, 1, 4, 1),
         (16, 128, 2, 4, 1), (32, 32, 1, 2, 1), (8, 512, 1, 4, 1), (4, 512, 1, 4, 1), (16, 512, 1, 4, 1)]
ROWS = [(16, 128, 2, 4, 1), (8, 128, 4, 4, 1), (16, 64, 4, 4, 1), (32, 128, 2, 4, 1),
        (16, 128, 1, 4, 1)]
L2_ROTATE_BYTES = 2 * 50 * 2**20


def _copies(nbytes: int, cap: int = 24) -> int:
    return max(1, min(cap, -(-L2_ROTATE_BYTES // max(1, nbytes))))


def _row(label: str, us: float, err: float, nbytes: int, bf16_us: float | None) -> str:
    bad = "" if err < 1e-2 else f"  BAD rel.err {err:.1e}"
    vs = f"{bf16_us / us:6.2f}x" if bf16_us else "      "
    return f"{label:<44} {us:9.2f} {nbytes / us / 1e3:7.0f} {vs}{bad}"


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-30)).item()


def linear_weights(n: int, k: int, device: torch.device) -> tuple[torch.Generator, object, list, torch.Tensor, list]:
    """A seeded random ``[n, k]`` fma8 weight, its copies (enough to exceed L2, so timed calls read DRAM),
    its bf16 dequantization and copies of that; and the generator, for the activations."""
    from quartet.kernels.mxfp4.format import quantize_torch
    from quartet.kernels.mxfp4.layout import to_layout
    from quartet.kernels.mxfp4.ops import dequantize

    gen = torch.Generator(device=device)
    gen.manual_seed(n * 7 + k)
    w = to_layout(quantize_torch(torch.randn((n, k), generator=gen, device=device) * 0.02), "fma8")
    code_bytes = w.blocks.numel() + w.scales.numel()
    ws = [w] + [type(w)(w.blocks.clone(), w.scales.clone(), w.k, w.layout) for _ in range(_copies(code_bytes) - 1)]
    dense = dequantize(to_layout(w, "ocp"))
    dense_copies = [dense] + [dense.clone() for _ in range(_copies(dense.numel() * 2, cap=8) - 1)]
    return gen, w, ws, dense, dense_copies


def sweep_linear(shapes: Sequence[tuple[int, int]], ms: Sequence[int], device: torch.device) -> list[str]:
    from quartet.kernels.mxfp4._fma import FmaConfig
    from quartet.kernels.mxfp4.gemv import mxfp4_gemv

    lines = [f"{'shape m variant config(bn,kw,chunks,warps,stages)':<44} {'us':>9} {'GB/s':>7} vs bf16"]
    for n, k in shapes:
        gen, w, ws, dense, dense_copies = linear_weights(n, k, device)
        code_bytes = w.blocks.numel() + w.scales.numel()
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


def _moe_layer(device: torch.device, dims: tuple[int, int, int, int], with_bf16: bool = False):
    """fma8 experts of N(0, 0.02) weights, the generator, and (``with_bf16``) their bf16
    dequantization with the biases: (gate_up, gate_up bias, down, down bias)."""
    from quartet.kernels.mxfp4.format import quantize_torch
    from quartet.kernels.mxfp4.reference import dequantize_torch
    from quartet.kernels.mxfp4.moe_layout import MoEWeights

    e, h, i, _ = dims
    gen = torch.Generator(device=device)
    gen.manual_seed(7)
    gate_up = quantize_torch(torch.randn((e, 2 * i, h), generator=gen, device=device) * 0.02)
    down = quantize_torch(torch.randn((e, h, i), generator=gen, device=device) * 0.02)
    gub = (torch.randn((e, 2 * i), generator=gen, device=device) * 0.02).bfloat16()
    db = (torch.randn((e, h), generator=gen, device=device) * 0.02).bfloat16()
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    dense = (dequantize_torch(gate_up).bfloat16(), gub, dequantize_torch(down).bfloat16(), db) if with_bf16 else None
    return w, gen, dense


def _precompile(pairs: list[tuple[tuple, tuple]], dims: tuple[int, int, int, int]) -> None:
    """Compile every (gate_up, down) config in parallel processes so the timed loop hits Triton's
    disk cache (one process compiles one kernel at a time)."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(12, len(pairs)), mp_context=ctx) as pool:
        for fut in [pool.submit(_compile_one, cg, cd, dims) for cg, cd in pairs]:
            try:
                fut.result()
            except Exception as exc:  # the timed loop reports the failing config
                print(f"precompile: {type(exc).__name__}: {str(exc)[:100]}", flush=True)


def _compile_one(cg: tuple, cd: tuple, dims: tuple[int, int, int, int]) -> None:
    from quartet.kernels.mxfp4._fma import FmaConfig
    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma
    from quartet.kernels.mxfp4.reference import route_torch

    device = torch.device("cuda")
    w, gen, _ = _moe_layer(device, (4, *dims[1:]))
    x = torch.randn((2, dims[1]), generator=gen, device=device).bfloat16()
    ids, wts = route_torch(torch.randn((2, 4), generator=gen, device=device), dims[3])
    as_cfg = lambda c: FmaConfig(bn=c[0], kw=c[1], chunks=c[2], num_warps=c[3], num_stages=c[4])  # noqa: E731
    moe_decode_fma(x, ids.to(torch.int32), wts, w, 1.702, 7.0, as_cfg(cg), as_cfg(cd))
    torch.cuda.synchronize()


def _routings(t: int, dims: tuple[int, int, int, int], gen: torch.Generator, device: torch.device) -> list:
    """Eight routings of ``t`` tokens, to rotate over: different experts each call (a layer's
    experts are far larger than L2)."""
    from quartet.kernels.mxfp4.reference import route_torch

    e, h, _, top_k = dims
    inputs = []
    for _ in range(8):
        x = torch.randn((t, h), generator=gen, device=device).bfloat16()
        ids, wts = route_torch(torch.randn((t, e), generator=gen, device=device), top_k)
        inputs.append((x, ids.to(torch.int32), wts))
    return inputs


class _MoERows:
    """Timed rows at one token count against the floor: the distinct experts the rotated
    routings touch, their MXFP4 bytes over ``copy_gbps``."""

    def __init__(self, t: int, inputs: list, w, dims: tuple[int, int, int, int], copy_gbps: float,
                 lines: list[str]) -> None:
        from quartet.kernels.mxfp4.reference import mxfp4_moe_torch

        _, h, i, _ = dims
        self.inputs, self.lines = inputs, lines
        distinct = sum(len(set(a[1].flatten().tolist())) for a in inputs) / len(inputs)
        self.nbytes = distinct * (3 * i * h // 2 + 3 * i * h // 32) + t * h * 4
        self.floor = self.nbytes / copy_gbps / 1e3
        self.ref = mxfp4_moe_torch(*inputs[0], w)
        self.add_line(f"-- {t} token(s): {distinct:.2f} distinct experts a call, {self.nbytes / 1e6:.1f} MB, "
                      f"floor {self.floor:.2f} us at {copy_gbps:.0f} GB/s")

    def add_line(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def row(self, label: str, fn: Callable) -> float:
        try:
            err = _rel_err(fn(*self.inputs[0]), self.ref)
            tm = time_calls([lambda a=a: fn(*a) for a in self.inputs], samples=10)
        except Exception as exc:  # a config the compiler rejects is a data point, not a crash
            self.add_line(f"{label:<58} error: {type(exc).__name__}: {str(exc)[:100]}")
            return float("inf")
        bad = "" if err < 1e-2 else f"  BAD rel.err {err:.1e}"
        self.add_line(f"{label:<58} {tm.median_us:8.2f} {tm.p20_us:6.2f}-{tm.p80_us:6.2f} "
                      f"{self.nbytes / tm.median_us / 1e3:6.0f} {tm.median_us / self.floor:7.2f}{bad}")
        return tm.median_us


_MOE_HEADER = (f"{'gpt-oss MoE decode: tokens, variant, configs (bn,kw,chunks,warps)':<58} {'us':>8} {'p20-p80':>13} "
               f"{'GB/s':>6} {'x floor':>7}")


def _fixed(w, cg: tuple, cd: tuple) -> Callable:
    from quartet.kernels.mxfp4._fma import FmaConfig
    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma

    as_cfg = lambda c: FmaConfig(bn=c[0], kw=c[1], chunks=c[2], num_warps=c[3], num_stages=c[4])  # noqa: E731
    return lambda x, ids, wts: moe_decode_fma(x, ids, wts, w, 1.702, 7.0, as_cfg(cg), as_cfg(cd))


def sweep_moe(device: torch.device, tokens: Sequence[int] = (1, 2, 4, 8),
              dims: tuple[int, int, int, int] = (32, 2880, 2880, 4), copy_gbps: float = 2980.0) -> list[str]:
    """At each token count: every config of ``MOE_GRID`` for gate_up against a fixed down
    config, then for down with the best gate_up, then the fixed defaults
    (``QUARTET_KERNELS_AUTOTUNE=0``) and the autotuned launch; torch bf16 at 1 token.
    ``dims``: experts, hidden, intermediate, top-k (default: gpt-oss-20b)."""
    from quartet.kernels.mxfp4._fma import MOE_GRID

    fixed_dn = (32, 128, 1, 4, 1)
    _precompile([(c, fixed_dn) for c in MOE_GRID] + [(fixed_dn, c) for c in MOE_GRID], dims)
    w, gen, dense = _moe_layer(device, dims, with_bf16=True)
    lines = [_MOE_HEADER]
    for t in tokens:
        rows = _MoERows(t, _routings(t, dims, gen, device), w, dims, copy_gbps, lines)
        best_gu, best_t = fixed_dn, float("inf")
        for c in MOE_GRID:
            us = rows.row(f"T={t} gu {c[:4]} dn {fixed_dn[:4]}", _fixed(w, c, fixed_dn))
            if us < best_t:
                best_gu, best_t = c, us
        for c in MOE_GRID:
            if c != fixed_dn:
                rows.row(f"T={t} gu {best_gu[:4]} dn {c[:4]}", _fixed(w, best_gu, c))
        _default_rows(rows, t, w)
        if t == 1:
            lines += _bf16_moe_row(rows.inputs, dense, rows.nbytes, rows.floor)
    return lines


def _default_rows(rows: _MoERows, t: int, w) -> None:
    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma

    for label, flag in (("fixed defaults (AUTOTUNE=0)", "0"), ("autotuned", "1")):
        os.environ["QUARTET_KERNELS_AUTOTUNE"] = flag
        rows.row(f"T={t} {label}", lambda x, ids, wts: moe_decode_fma(x, ids, wts, w, 1.702, 7.0))
    os.environ["QUARTET_KERNELS_AUTOTUNE"] = "0"


def compare_moe(device: torch.device, tokens: Sequence[int], before: str | None, extra: Sequence[tuple],
                dims: tuple[int, int, int, int] = (32, 2880, 2880, 4), copy_gbps: float = 2980.0) -> list[str]:
    """The engine's two launch modes (fixed defaults, autotuned) at each token count, beside
    ``before`` (a module with an earlier ``moe_decode_fma``, run with its fixed defaults), the
    ``extra`` (gate_up, down) config pairs at one token, torch bf16 at one token, and the
    device time of each kernel of the fixed-default launch at one token (torch.profiler)."""
    import importlib

    from quartet.kernels.mxfp4._fma import MOE_DOWN_GRID, MOE_GATE_UP_GRID, moe_fma_defaults

    defaults = [moe_fma_defaults(t, dims[1] // 8, dims[2] // 8) for t in tokens]
    as_tuple = lambda c: (c.bn, c.kw, c.chunks, c.num_warps, c.num_stages)  # noqa: E731
    _precompile(list(zip(MOE_GATE_UP_GRID, MOE_DOWN_GRID)) + list(extra)
                + [(as_tuple(g), as_tuple(d)) for g, d in defaults], dims)
    old = importlib.import_module(before) if before else None
    w, gen, dense = _moe_layer(device, dims, with_bf16=True)
    lines = [_MOE_HEADER]
    for t in tokens:
        rows = _MoERows(t, _routings(t, dims, gen, device), w, dims, copy_gbps, lines)
        if old is not None:
            os.environ["QUARTET_KERNELS_AUTOTUNE"] = "0"
            rows.row(f"T={t} before ({before}, its fixed defaults)",
                     lambda x, ids, wts: old.moe_decode_fma(x, ids, wts, w, 1.702, 7.0))
        _default_rows(rows, t, w)
        if t == 1:
            for cg, cd in extra:
                rows.row(f"T={t} gu {cg[:4]} dn {cd[:4]}", _fixed(w, cg, cd))
            lines += _bf16_moe_row(rows.inputs, dense, rows.nbytes, rows.floor)
            lines += _kernel_split(rows.inputs, w)
    return lines


def _kernel_split(inputs: list, w, **options) -> list[str]:
    """Median device time of each kernel of the fixed-default launch (24 eager calls, rotated);
    ``options`` go to ``moe_decode_fma`` (``cuda_cores=True``: the CUDA-core kernels)."""
    from torch.profiler import ProfilerActivity, profile

    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma

    if not torch.cuda.is_available():
        return []
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for r in range(24):
            moe_decode_fma(*inputs[r % len(inputs)], w, 1.702, 7.0, **options)
        torch.cuda.synchronize()
    times: dict[str, list[float]] = {}
    for ev in prof.events():
        if ev.device_type.name == "CUDA" and "kernel" in ev.name:
            times.setdefault(ev.name, []).append(getattr(ev, "device_time", 0.0) or ev.self_device_time_total)
    out = [f"  kernel {name}: median {sorted(v)[len(v) // 2]:.2f} us over {len(v)} launches"
           for name, v in sorted(times.items())]
    for line in out:
        print(line, flush=True)
    return out


def _bf16_moe_row(inputs: list, dense: tuple, nbytes: float, floor: float) -> list[str]:
    """The peer: torch bf16 on the dequantized experts of each call's routing (known on the
    host, so the loop over pairs is captured in the graph), the same rotation."""
    gate_up, gub, down, db = dense

    def forward(x: torch.Tensor, ids: torch.Tensor, wts: torch.Tensor, host_ids: list) -> torch.Tensor:
        y = torch.zeros_like(x, dtype=torch.float32)
        for t, experts in enumerate(host_ids):
            for j, e in enumerate(experts):
                hgl = F.linear(x[t], gate_up[e], gub[e]).float()
                glu, lin = hgl[0::2].clamp(max=7.0), hgl[1::2].clamp(min=-7.0, max=7.0)
                act = (glu * torch.sigmoid(1.702 * glu) * (lin + 1)).bfloat16()
                y[t] += wts[t, j] * F.linear(act, down[e], db[e]).float()
        return y.bfloat16()

    host = [a[1].tolist() for a in inputs]
    tm = time_calls([lambda a=a, hi=hi: forward(a[0], a[1], a[2], hi) for a, hi in zip(inputs, host)], samples=10)
    line = (f"{'T=1 torch bf16 (dequantized experts)':<58} {tm.median_us:8.2f} {tm.p20_us:6.2f}-{tm.p80_us:6.2f} "
            f"{nbytes / tm.median_us / 1e3:6.0f} {tm.median_us / floor:7.2f}  (GB/s on the MXFP4 bytes)")
    print(line, flush=True)
    return [line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="28672x8192,2880x2880,5760x2880,2880x4096")
    parser.add_argument("--m", default="1,2,4")
    parser.add_argument("--moe", action="store_true", help="also sweep the MoE decode (gpt-oss-20b layer)")
    parser.add_argument("--tokens", default="1,2,4,8", help="token counts of the MoE sweep")
    parser.add_argument("--moe-compare", action="store_true",
                        help="MoE decode: fixed defaults and autotuned (and --before) instead of the config sweep")
    parser.add_argument("--before", default=None, help="module with an earlier moe_decode_fma to compare with")
    parser.add_argument("--extra", default="", help="MoE (gate_up;down) config pairs at one token, "
                        "e.g. '2,512,1,2,1;16,128,1,4,1 4,512,1,4,1;8,128,1,2,1'")
    parser.add_argument("--out", default=os.environ.get("OUT", ""))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("the sweep needs a CUDA device")
    device = torch.device("cuda")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    lines = sweep_linear(shapes, [int(v) for v in args.m.split(",") if v], device) if shapes else []
    if args.moe or args.moe_compare:
        from benchmarks.harness.ceilings import measure_copy_gbps

        copy = measure_copy_gbps(device)
        print(f"copy bandwidth {copy:.0f} GB/s", flush=True)
        tokens = [int(v) for v in args.tokens.split(",")]
        if args.moe_compare:
            extra = [tuple(tuple(int(v) for v in c.split(",")) for c in p.split(";")) for p in args.extra.split()]
            lines += [f"copy bandwidth {copy:.0f} GB/s"]
            lines += compare_moe(device, tokens, args.before, extra, copy_gbps=copy)
        else:
            lines += [f"copy bandwidth {copy:.0f} GB/s"] + sweep_moe(device, tokens, copy_gbps=copy)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sweep_decode.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
