"""The paged KV pool: its shape, binding to a model's attention layers, and sizing from settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quartet.services.engine.runner.kv_cache import CPU_BUDGET_BYTES, KVCache, KVCacheShape, num_blocks_for
from quartet.services.engine.layers.attention import Attention


class TwoLayers(nn.Module):
    def __init__(self, count: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Attention(4, 2, 8, scale=1.0) for _ in range(count))


def test_pool_shape_and_binding_in_layer_order() -> None:
    model = TwoLayers()
    shape = KVCacheShape.of(model, block_size=16)
    assert shape == KVCacheShape(num_layers=2, num_kv_heads=2, head_dim=8, block_size=16)
    cache = KVCache(shape, 10, dtype=torch.float32, device="cpu")
    cache.bind(model)
    assert model.layers[1].k_cache is cache.keys[1] and model.layers[0].v_cache is cache.values[0]
    assert cache.keys[0].shape == (10, 16, 2, 8) and cache.num_tokens == 160
    assert not cache.keys[0].any()  # zero-filled: masked padding must not be NaN
    assert cache.num_bytes() == 10 * shape.bytes_per_block(torch.float32)
    with pytest.raises(ValueError, match="3 attention layers"):
        cache.bind(TwoLayers(3))


def test_block_count_from_settings_or_memory_budget() -> None:
    shape = KVCacheShape(num_layers=30, num_kv_heads=3, head_dim=64, block_size=16)
    per_block = 2 * 30 * 16 * 3 * 64 * 4
    assert shape.bytes_per_block(torch.float32) == per_block
    common = dict(dtype=torch.float32, device="cpu", gpu_memory_utilization=0.9)
    assert num_blocks_for(shape, configured=7, **common) == 7
    assert num_blocks_for(shape, configured=0, **common) == CPU_BUDGET_BYTES // per_block


def test_runner_caps_the_context_at_the_pool() -> None:
    """A pool smaller than the model's context shrinks the context the engine admits, so one request always fits."""
    from quartet.services.engine.model_cache import ensure_bundled_model
    from quartet.services.engine.runner.native import NativeRunner
    from quartet.services.engine.runner.base import RunnerOptions

    runner = NativeRunner.load(ensure_bundled_model(quiet=True), RunnerOptions(num_kv_blocks=20, block_size=16))
    assert runner.info.context_length == 320 and runner.kv_layout.num_blocks == 20
