"""The tensor-core decode with and without programmatic dependent launch, one run.

    QUARTET_KERNELS_AUTOTUNE=0 python -m benchmarks.harness.stream_compare [--tokens 1,2,4]
        [--shapes 28672x8192] [--configs 4,2,4,1,1;2,2,4,1,1] [--options plain,pdl]
        [--moe-configs 4,1,3,1,1/4,2,3,1,1;4,2,3,1,1,regs=96/4,2,3,1,1] [--split] [--repeat 3]

``MmaConfig.pdl``: programmatic dependent launch, a launch's programs are placed while the
previous kernel drains and wait before touching its data. Rows: the one-row GEMV on "fma8t" and
"fma8" codes at the default launch (or ``--configs``), and the gpt-oss-20b MoE decode layer on
"fma8t" experts at ``--tokens`` (the defaults and ``--moe-configs``), with and without PDL and
with it in the down launch only (or ``--options``). Timing as in ``sweep.py`` (CUDA graphs of
back-to-back calls over weight copies or routings that exceed L2, median of 10). The "apart"
rows put a one-element torch kernel between calls, so that a PDL launch cannot overlap the
previous call: what is left of the PDL gain there is within a call (the MoE down launch during
gate_up's tail). Outputs are compared with the plain launch's
(``DIFF``: they should be equal). A benchmark, not a test (docs/perf-log/kernels-mxfp4.md, kernels run I).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.harness.ceilings import probe_start
from benchmarks.harness.sweep import _kernel_split, _moe_layer, _MoERows, _routings, linear_weights
from benchmarks.harness.timing import time_calls

# option: (GEMV or MoE gate_up launch, MoE down launch)
OPTIONS = {"plain": ({"pdl": False}, {"pdl": False}), "pdl": ({"pdl": True}, {"pdl": True}),
           "down_pdl": ({"pdl": False}, {"pdl": True})}


def _apart(fn, tick: torch.Tensor):
    def call(*args):
        out = fn(*args)
        tick.add_(1)  # a non-PDL kernel between calls
        return out
    return call


def compare_gemv(device: torch.device, copy_gbps: float, shapes: list[tuple[int, int]], configs: list[tuple],
                 options: list[tuple[str, tuple[dict, dict]]]) -> None:
    from quartet.kernels.mxfp4._dec2_gemv import gemv_mma_default
    from quartet.kernels.mxfp4._fma import MmaConfig
    from quartet.kernels.mxfp4.gemv import mxfp4_gemv
    from quartet.kernels.mxfp4.layout import to_layout

    tick = torch.zeros(1, device=device)
    for n, k in shapes:
        gen, w, ws, dense, dense_copies = linear_weights(n, k, device)
        del dense, dense_copies
        x = torch.randn((1, k), generator=gen, device=device).bfloat16()
        nbytes = w.blocks.numel() + w.scales.numel() + 2 * k + 2 * n
        floor = nbytes / copy_gbps / 1e3
        print(f"\n{n}x{k} M=1: {nbytes / 1e6:.1f} MB, floor {floor:.2f} us")
        print(f"{'layout launch option':<44} {'us':>8} {'apart us':>9} {'% copy':>7}")
        for layout in ("fma8t", "fma8"):
            group = [to_layout(wi, layout) for wi in ws]
            bases = [MmaConfig(*c) for c in configs] or [gemv_mma_default(n, k // 32, 132, layout == "fma8t")]
            for base in bases:
                ref = mxfp4_gemv(x, group[0], variant="mma", config=base)
                # A discarded timing first: the first rows of a process came out slower (run I, MoE rows).
                time_calls([lambda wi=wi: mxfp4_gemv(x, wi, variant="mma", config=base) for wi in group], samples=3)
                for name, (opts, _) in options:
                    cfg = dataclasses.replace(base, **opts)
                    fn = lambda wi, cfg=cfg: mxfp4_gemv(x, wi, variant="mma", config=cfg)  # noqa: E731
                    try:
                        same = torch.equal(fn(group[0]), ref)
                        us = time_calls([lambda wi=wi: fn(wi) for wi in group], samples=10).median_us
                        apart = time_calls([lambda wi=wi: _apart(fn, tick)(wi) for wi in group], samples=10).median_us
                    except Exception as exc:  # a launch the compiler or driver rejects is a data point
                        print(f"{layout} {name}: error {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                        continue
                    cap = f",regs {base.max_regs}" if base.max_regs else ""
                    launch = f"{base.num_warps},{base.rpt},{base.groups},{base.prefetch},{base.hint}{cap}"
                    label = f"{layout} ({launch}) {name}"
                    print(f"{label:<44} {us:8.2f} {apart:9.2f} {100 * floor / us:6.1f}%{'' if same else '  DIFF'}",
                          flush=True)
            del group
        del ws
        torch.cuda.empty_cache()


def compare_moe(device: torch.device, copy_gbps: float, tokens: list[int],
                options: list[tuple[str, tuple[dict, dict]]], configs: list[tuple],
                split: bool = False) -> None:
    from quartet.kernels.mxfp4._fma import moe_mma_defaults
    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma

    dims = (32, 2880, 2880, 4)
    w, gen, _ = _moe_layer(device, dims)
    wt = w.to_layout("fma8t")
    kb = dims[1] // 32
    tick = torch.zeros(1, device=device)
    for t in tokens:
        rows = _MoERows(t, _routings(t, dims, gen, device), w, dims, copy_gbps, [])
        launches = [("defaults", *moe_mma_defaults(t, kb, kb, tiled=True))]
        launches += configs
        # A discarded timing first: the first rows of a process came out slower (run I).
        time_calls([lambda a=a: moe_decode_fma(*a, wt, 1.702, 7.0) for a in rows.inputs], samples=3)
        for label, gu, dn in launches:
            ref = moe_decode_fma(*rows.inputs[0], wt, 1.702, 7.0, gu, dn)
            for name, (opts, down_opts) in options:
                cg, cd = dataclasses.replace(gu, **opts), dataclasses.replace(dn, **down_opts)
                fn = lambda x, ids, wts, cg=cg, cd=cd: moe_decode_fma(x, ids, wts, wt, 1.702, 7.0, cg, cd)  # noqa: E731
                same = torch.equal(fn(*rows.inputs[0]), ref)
                rows.row(f"T={t} {label} {name}{'' if same else ' DIFF'}", fn)
                if label == "defaults":
                    rows.row(f"T={t} {label} {name} apart", _apart(fn, tick))
        if split:  # each kernel's device time at the defaults (torch.profiler, eager calls)
            _kernel_split(rows.inputs, wt)


# Launch fields after the five positional ones, as ``key=value`` (``--moe-configs 4,2,3,1,1,regs=128/...``).
_KEYS = {"regs": "max_regs"}


def _mma(text: str):
    """``4,2,3,1,1,regs=96``: an ``MmaConfig`` from the positional fields, then the named ones."""
    from quartet.kernels.mxfp4._fma import MmaConfig

    parts = text.split(",")
    try:
        pos = [int(v) for v in parts if "=" not in v]
        named = {_KEYS[k]: int(v) for k, v in (p.split("=", 1) for p in parts if "=" in p)}
        return MmaConfig(*pos, **named)
    except (KeyError, ValueError, TypeError) as exc:
        raise SystemExit(f"bad launch {text!r}: {exc} (ints, then {', '.join(f'{k}=N' for k in _KEYS)})") from exc


def _moe_launch(text: str) -> tuple:
    """``gate_up/down`` -> (label, gate_up MmaConfig, down MmaConfig)."""
    halves = text.split("/")
    if len(halves) != 2:
        raise SystemExit(f"bad MoE launch {text!r}: want gate_up/down")
    return (text, _mma(halves[0]), _mma(halves[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="1,2,4")
    parser.add_argument("--shapes", default="28672x8192")
    parser.add_argument("--configs", default="", help="GEMV launches (warps,rpt,groups,prefetch,hint;...)")
    parser.add_argument("--moe-configs", default="", help="MoE launches beside the defaults (gate_up/down;...)")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"of {','.join(OPTIONS)}")
    parser.add_argument("--split", action="store_true", help="also each MoE kernel's device time (profiler)")
    parser.add_argument("--repeat", type=int, default=1, help="time the option list this many times, interleaved")
    args = parser.parse_args(argv)
    device, copy_gbps, shapes = probe_start(args.shapes)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs.split(";") if c]
    options = [(name, OPTIONS[name]) for _ in range(args.repeat) for name in args.options.split(",")]
    moe = [_moe_launch(c) for c in args.moe_configs.split(";") if c]  # parsed before any timing
    compare_gemv(device, copy_gbps, shapes, configs, options)  # type: ignore[arg-type]
    compare_moe(device, copy_gbps, [int(t) for t in args.tokens.split(",") if t], options, moe,  # type: ignore
                args.split)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
