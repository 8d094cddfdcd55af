"""The slot KV cache's growth and compaction, on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from services.engine.kv_cache import MIN_CAPACITY, KVCache


def cache(max_slots: int = 8, max_len: int = 4096) -> KVCache:
    return KVCache(
        num_layers=2,
        max_slots=max_slots,
        num_kv_heads=1,
        head_dim=2,
        max_len=max_len,
        dtype=torch.float32,
        device="cpu",
    )


def test_starts_small_and_grows_by_doubling_keeping_contents() -> None:
    kv = cache()
    assert (kv.num_slots, kv.capacity) == (1, MIN_CAPACITY)
    kv.keys[1][0, 0, 7] = torch.tensor([3.0, 4.0])
    kv.ensure(3, 600)
    assert (kv.num_slots, kv.capacity) == (4, 1024)
    assert kv.keys[1][0, 0, 7].tolist() == [3.0, 4.0]
    assert kv.keys[0].shape == (4, 1, 1024, 2)


def test_growth_is_capped_and_limits_are_errors() -> None:
    kv = cache(max_slots=3, max_len=700)
    kv.ensure(3, 700)
    assert (kv.num_slots, kv.capacity) == (3, 700)
    with pytest.raises(ValueError, match="context length"):
        kv.ensure(1, 701)
    with pytest.raises(ValueError, match="at most 3"):
        kv.ensure(4, 10)


def test_move_copies_a_slot_and_reset_shrinks() -> None:
    kv = cache()
    kv.ensure(2, 10)
    kv.values[0][1, 0, :3] = torch.ones(3, 2)
    kv.move(1, 0, 3)
    assert kv.values[0][0, 0, :3].sum().item() == 6.0
    small = kv.num_bytes()
    kv.ensure(8, 4000)
    assert kv.num_bytes() > small
    kv.reset()
    assert (kv.num_slots, kv.capacity) == (1, MIN_CAPACITY)
