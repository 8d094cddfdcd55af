"""A few calls of the MoE grouped path on one gpt-oss-20b layer, for Nsight Compute to read.

    ncu --set full -k regex:_kernel --launch-skip 2 --launch-count 2 \\
        python3 -m benchmarks.harness.cases.gpt_oss_moe.profile_grouped --m 256 --calls 1

The first call compiles and warms (its two launches are the ones ``--launch-skip 2`` skips);
the profiled launches are the later calls' gate_up and down kernels.
``--variant`` picks the ``GroupedConfig`` variant; ``--compare`` instead times every variant
(CUDA events around eager calls, median: the routing's own launches included, so only the
differences mean much) and prints its largest difference from the default's output.
``ncu_summary.py`` prints the figures that say what bounds a kernel from a report's raw page.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.harness import load_case
from benchmarks.harness.timing import time_calls
from quartet.kernels.mxfp4.moe import mxfp4_moe_triton
from quartet.kernels.mxfp4.moe_grouped import GroupedConfig, grouped_config

# "default": grouped_config's choice; "run2": the tiles before run 3 (docs/perf-log/kernels-mxfp4.md).
RUN2 = {"decode": "f32", "prefetch_scales": False, "pair_rows": False}
VARIANTS = {"default": {}, "run2": RUN2, "prefetch": {**RUN2, "prefetch_scales": True},
            "bf16x2": {**RUN2, "decode": "bf16x2"},
            "bf16x2_prefetch": {**RUN2, "decode": "bf16x2", "prefetch_scales": True},
            "bf16x2_prefetch_pair": {"decode": "bf16x2", "prefetch_scales": True, "pair_rows": True}}


def _median_us(fn, reps: int = 20) -> float:
    """Median µs of eager calls (the routing's own launches cannot be captured in a graph)."""
    return time_calls([fn], samples=reps, use_graph=False).median_us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=256, help="tokens (pairs = 4 x m)")
    parser.add_argument("--calls", type=int, default=1, help="calls after the warm-up one")
    parser.add_argument("--variant", default="default", choices=sorted(VARIANTS))
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args(argv)
    case = load_case("gpt_oss_moe")
    model = case.model
    device = torch.device("cuda")
    gen = torch.Generator(device=device)
    gen.manual_seed(case.manifest.seed)
    inp = model.prepare({**model.make_weights(gen, device), **model.make_activations(args.m, gen, device)})
    base = grouped_config(args.m * model.top_k, model.e)

    def call(cfg: GroupedConfig) -> torch.Tensor:
        return mxfp4_moe_triton(inp["x"], inp["ids"], inp["weights"], inp["fma8"], path="grouped", config=cfg)

    if args.compare:
        ref = call(base).float()
        for name, change in VARIANTS.items():
            cfg = dataclasses.replace(base, **change)
            diff = ((call(cfg).float() - ref).abs().max() / ref.abs().max()).item()
            print(f"m {args.m:>5} {name:<18} {_median_us(lambda: call(cfg)):8.1f} us  max diff / max |ref| {diff:.1e}")
        return 0
    cfg = dataclasses.replace(base, **VARIANTS[args.variant])
    for _ in range(1 + args.calls):
        call(cfg)
    torch.cuda.synchronize()
    print(f"m {args.m}, pairs {args.m * model.top_k}, config {cfg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
