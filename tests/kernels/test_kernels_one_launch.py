"""The MoE decode's two halves in one persistent launch (``MmaConfig.one_launch``, ``_dec2_moe``).

The one launch runs the same items as the two launches (same sums, same fixed-order fix-ups), only
in another order and with down items waiting for their pair's activations, so its output must
equal the two launches' bit for bit, call after call (its counters reset themselves). On the CPU
the interpreter runs the programs one after another, so there the first program takes every
ticket; on CUDA the programs run at once and the waits are real.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels.mxfp4._fma import MmaConfig
from kernels.mxfp4.moe_decode import moe_decode_fma
from kernels.mxfp4.reference import mxfp4_moe_torch
from tests.kernels.test_kernels_stream import PDL, _experts, _replayed, _routing

# (gate_up, down): split-K in both halves with different rows a thread; whole rows in gate_up (its
# activations stored without a fix-up); two warps.
CONFIGS = [
    (MmaConfig(num_warps=1, rpt=2, groups=1, prefetch=1, hint=1), MmaConfig(num_warps=1, rpt=1, groups=1)),
    (MmaConfig(num_warps=1, rpt=1, groups=2, prefetch=2), MmaConfig(num_warps=1, rpt=2, groups=1, hint=1)),
    (MmaConfig(num_warps=2, rpt=1, groups=1), MmaConfig(num_warps=2, rpt=1, groups=2)),
]


def _one(cfg: MmaConfig, n: int = 2) -> MmaConfig:
    return dataclasses.replace(cfg, one_launch=n)


@pytest.mark.parametrize("layout", ["fma8", "fma8t"])
@pytest.mark.parametrize("configs,tokens", [(CONFIGS[0], 1), (CONFIGS[1], 2), (CONFIGS[2], 3)],
                         ids=["split-1", "whole-2", "warps-3"])
def test_one_launch_equals_two(layout: str, configs, tokens: int, device, gen) -> None:
    w = _experts(160, 64, device, gen).to_layout(layout)  # 5 MX blocks along H: an odd last one
    gu, dn = configs
    for _ in range(2):  # a second routing: the first call's counters must be back at zero
        x = torch.randn(tokens, 160, device=device, generator=gen).bfloat16()
        ids, wts = _routing(tokens, device, gen)
        two = moe_decode_fma(x, ids, wts, w, 1.702, 7.0, gu, dn)
        one = moe_decode_fma(x, ids, wts, w, 1.702, 7.0, _one(gu), dn)
        assert torch.equal(one, two)
        assert torch.equal(moe_decode_fma(x, ids, wts, w, 1.702, 7.0, _one(gu, 1), dn), two)
    ref = mxfp4_moe_torch(x.float(), ids, wts, w).to(two.dtype)
    assert ((one.double() - ref.double()).norm() / ref.double().norm()).item() < 1e-2


def test_one_launch_with_more_programs_than_items(device, gen) -> None:
    """Programs beyond the item count (capped to it) and a single program both finish."""
    w = _experts(64, 64, device, gen).to_layout("fma8t")
    x = torch.randn(1, 64, device=device, generator=gen).bfloat16()
    ids, wts = _routing(1, device, gen)
    gu, dn = MmaConfig(num_warps=1, groups=4), MmaConfig(num_warps=1, groups=4)
    two = moe_decode_fma(x, ids, wts, w, 1.702, 7.0, gu, dn)
    for n in (1, 64):
        assert torch.equal(moe_decode_fma(x, ids, wts, w, 1.702, 7.0, _one(gu, n), dn), two)


def test_one_launch_errors_are_clear(device, gen) -> None:
    with pytest.raises(ValueError, match="one_launch=-1 must be >= 0"):
        MmaConfig(one_launch=-1)
    w = _experts(64, 64, device, gen).to_layout("fma8t")
    ids, wts = _routing(1, device, gen)
    with pytest.raises(ValueError, match="one warp count: gate_up has 1, down 2"):
        moe_decode_fma(torch.zeros(1, 64, device=device, dtype=torch.bfloat16), ids, wts, w, 1.702, 7.0,
                       MmaConfig(num_warps=1, one_launch=2), MmaConfig(num_warps=2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the waits between programs need a GPU")
@pytest.mark.parametrize("per_sm", [1, 4, 16])
def test_one_launch_chain_in_a_graph(per_sm: int, device, gen) -> None:
    """Four gpt-oss-sized layers in a row, one launch each (with PDL), each reading the one before's
    output, replayed in a CUDA graph; 16 programs an SM are more than fit, so some start late."""
    h, i, tokens = 2880, 2880, 2
    layers = [_experts(h, i, device, gen, 2 / h**0.5).to_layout("fma8t") for _ in range(2)] * 2
    routes = [_routing(tokens, device, gen) for _ in layers]
    gu = MmaConfig(num_warps=4, rpt=2, groups=3, prefetch=1, hint=1, one_launch=per_sm, **PDL)
    dn = MmaConfig(num_warps=4, rpt=2, groups=3, prefetch=1, hint=1, **PDL)
    x = torch.randn(tokens, h, device=device, generator=gen).bfloat16()

    def run() -> torch.Tensor:
        y = x
        for w, (ids, wts) in zip(layers, routes):
            y = moe_decode_fma(y, ids, wts, w, 1.702, 7.0, gu, dn)
        return y

    fresh = [torch.randn(tokens, h, device=device, generator=gen).bfloat16()]
    for _ in routes:
        fresh += list(_routing(tokens, device, gen))
    inputs = [x] + [t for r in routes for t in r]
    out = _replayed(run, inputs, lambda: fresh)
    two = x
    for w, (ids, wts) in zip(layers, routes):
        two = moe_decode_fma(two, ids, wts, w, 1.702, 7.0, dataclasses.replace(gu, one_launch=0), dn)
    assert torch.equal(out, two)
