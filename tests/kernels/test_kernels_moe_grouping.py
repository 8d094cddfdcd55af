"""``group_by_expert`` in one Triton launch against the torch grouping: identical outputs
(the sort is stable both ways), over expert counts that are and are not powers of two, pair
counts past one chunk, empty and crowded experts."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4.moe_layout import group_by_expert


@pytest.mark.parametrize("tokens,k,experts,block", [(37, 4, 8, 16), (256, 4, 32, 64), (100, 4, 24, 16),
                                                    (750, 4, 128, 32), (750, 4, 128, 16), (3, 2, 32, 16)])
@pytest.mark.parametrize("skew", [False, True])
def test_triton_grouping_equals_torch(tokens: int, k: int, experts: int, block: int, skew: bool, device,
                                      gen) -> None:
    logits = torch.randn(tokens, experts, device=device, generator=gen)
    if skew:  # one expert in every token's top-k, half the experts in none
        logits[:, 1] += 100.0
        logits[:, experts // 2:] -= 100.0
    ids = torch.topk(logits, k, dim=1).indices.to(torch.int32)
    ref = group_by_expert(ids, experts, block, impl="torch")
    out = group_by_expert(ids, experts, block, impl="triton")
    for name in ("order", "tile_expert", "tile_start", "tile_end", "expert_end"):
        assert torch.equal(getattr(out, name), getattr(ref, name)), name
    assert out.block == block


def test_rejects_unknown_impl(device) -> None:
    with pytest.raises(ValueError, match="impl"):
        group_by_expert(torch.zeros(2, 2, dtype=torch.int32, device=device), 4, 16, impl="numpy")
