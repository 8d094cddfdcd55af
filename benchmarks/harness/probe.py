"""Run one variant of one case at one ``m`` a few times, nothing else: a target for profilers.

The first call (compilation, autotuning) runs outside the NVTX range "probe", the timed
calls inside it, so a profiler can keep just those:

    ncu --nvtx --nvtx-include "probe/" --set full python -m benchmarks.harness.probe dense_28672x8192 1 gemv_fma
"""

from __future__ import annotations

import sys

import torch

from benchmarks.harness.case import load_case
from benchmarks.harness.inputs import case_inputs


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__)
        return 2
    name, m, variant = argv[0], int(argv[1]), argv[2]
    calls = int(argv[3]) if len(argv) == 4 else 3
    case = load_case(name)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    inputs = case_inputs(case, m, device)
    forward = case.model.variants(m)[variant] if variant != "torch_bf16" else case.model.baseline(m)[1]
    forward(inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    with torch.cuda.nvtx.range("probe") if device.type == "cuda" else _nothing():
        for _ in range(calls):
            forward(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
