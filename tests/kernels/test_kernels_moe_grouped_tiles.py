"""Grouped MoE tiles added for decode batches (issue 4): down with its own warp count and
wider tiles than gate_up, 64-row tiles at few pairs, gate and up stacked with the weight
as the left operand, against the torch reference.

The layer, routings and tolerance are ``test_kernels_moe.py``'s (H = I = 96/64: K tails
against 64-wide K steps)."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4.moe import GroupedConfig, mxfp4_moe_triton
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.reference import mxfp4_moe_torch
from tests.kernels.test_kernels_moe import H, _routing, assert_moe_close, make_layer

CONFIGS = [
    GroupedConfig(block=16, bn=32, bn_down=128, down_warps=8, decode="bf16x2", prefetch_scales=True, pair_rows=True),
    GroupedConfig(block=64, bn=128, bn_down=128, num_warps=8, decode="bf16x2", prefetch_scales=True, pair_rows=True,
                  num_stages=4),
    # Gate and up stacked in one tile with the weight as the MMA's left operand.
    GroupedConfig(block=32, bn=32, bn_down=64, w_left=True, decode="bf16x2", prefetch_scales=True, pair_rows=True),
    GroupedConfig(block=16, bn=16, bk=128, w_left=True, pair_rows=True),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", ["spread", "one_expert_all_rows"])
def test_tiles_match_reference(config: GroupedConfig, kind: str, device, gen) -> None:
    gate_up, down, gub, db = make_layer(device, gen, bias=True)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    tokens = 29  # not a multiple of any tile
    x = torch.randn(tokens, H, device=device, generator=gen).bfloat16()
    ids, wts = _routing(kind, tokens, device, gen)
    out = mxfp4_moe_triton(x, ids, wts, w, path="grouped", config=config)
    assert out.shape == (tokens, H)
    assert_moe_close(out, mxfp4_moe_torch(x, ids, wts, w))
