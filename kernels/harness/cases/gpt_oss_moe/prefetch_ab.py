"""What gate_up's L2 prefetch of the down experts buys the one-token MoE decode, timed in turns.

    python -m kernels.harness.cases.gpt_oss_moe.prefetch_ab [--rounds 3]

The harness's method (``Experiment``: CUDA-graph replays rotating over routed input sets until
the weights come from DRAM, not L2; parity against torch bf16), on the ``gpt_oss_moe`` case at
one token: the default decode with ``moe_decode.PREFETCH_DOWN_MAX_BYTES`` at its value and at 0,
alternated ``--rounds`` times (the card's clock drifts). Prints µs, % of the copy bandwidth, and
the ratio to the floor (the four experts' bytes over the measured copy bandwidth).
"""

from __future__ import annotations

import argparse

import torch

from kernels.harness import load_case
from kernels.harness.ceilings import measure_ceilings
from kernels.harness.execute import Experiment
from kernels.mxfp4 import moe_decode
from kernels.mxfp4.moe import mxfp4_moe_triton


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda")
    case = load_case("gpt_oss_moe")
    exp = Experiment(case, 1, device, measure_ceilings(device))
    label, base = case.model.baseline(1)
    exp.execute_variant(label, base, is_baseline=True)
    on = moe_decode.PREFETCH_DOWN_MAX_BYTES

    def forward(limit: int):
        def run(inp):
            moe_decode.PREFETCH_DOWN_MAX_BYTES = limit  # read when the launch is recorded
            try:
                return mxfp4_moe_triton(inp["x"], inp["ids"], inp["weights"], inp["fma8"])
            finally:
                moe_decode.PREFETCH_DOWN_MAX_BYTES = on
        return run

    floor_bytes = case.model.work(1, "moe_fma8").bytes
    print(f"copy {exp.ceilings.copy_gbps:.0f} GB/s; floor {floor_bytes / exp.ceilings.copy_gbps / 1e3:.2f} us")
    print("| round | variant | us | % copy | / floor | rel. L2 vs bf16 |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in range(args.rounds):
        for name, limit in (("L2 prefetch", on), ("no prefetch", 0)):
            v = exp.execute_variant(name, forward(limit))
            print(f"| {r} | {name} | {v.median_us:.2f} | {v.pct_copy_bw:.1f} | {100 / v.pct_copy_bw:.2f} | "
                  f"{v.rel_l2:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
