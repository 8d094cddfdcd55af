"""The paged KV cache: one pool of fixed-size blocks per layer, shared by every sequence.

Each layer holds keys and values as ``[num_blocks, block_size, kv_heads, head_dim]``
(vLLM's PagedAttention, Kwon et al. 2023). Which blocks a sequence owns is the
block manager's business (``block_manager.py``, pure Python); the pool only
stores tensors and hands them to the model's attention layers (``bind``).

The pool is allocated once at start-up and never grows: ENGINE_KV_CACHE_BLOCKS
fixes its size, or on CUDA GPU_MEMORY_UTILIZATION of the free memory after
the weights, or on CPU a fixed memory budget; the context length the runner
reports is capped at the pool's size. It is zero-filled: padded block
table entries gather block 0, and masked-out garbage must not be NaN (a zero
attention weight times NaN is NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quartet.services.engine.layers.attention import Attention

#: KV memory on CPU when ENGINE_KV_CACHE_BLOCKS is 0: ~11k tokens of SmolLM2-135M, without a GPU to size against.
CPU_BUDGET_BYTES = 512 << 20


@dataclass(frozen=True, slots=True)
class KVCacheShape:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    block_size: int

    @classmethod
    def of(cls, model: nn.Module, block_size: int) -> KVCacheShape:
        layers = attention_layers(model)
        if not layers:
            raise ValueError("the model has no Attention layers to give a KV cache to")
        heads = {(a.num_kv_heads, a.head_dim) for a in layers}
        if len(heads) != 1:
            raise ValueError(f"attention layers disagree on (kv_heads, head_dim): {sorted(heads)}")
        (num_kv_heads, head_dim), = heads
        return cls(len(layers), num_kv_heads, head_dim, block_size)

    def bytes_per_block(self, dtype: torch.dtype) -> int:
        element = torch.empty((), dtype=dtype).element_size()
        return 2 * self.num_layers * self.block_size * self.num_kv_heads * self.head_dim * element


def attention_layers(model: nn.Module) -> list[Attention]:
    return [m for m in model.modules() if isinstance(m, Attention)]


class KVCache:
    def __init__(self, shape: KVCacheShape, num_blocks: int, *, dtype: torch.dtype, device: torch.device | str) -> None:
        if num_blocks < 1:
            raise ValueError(f"the KV cache needs at least one block, not {num_blocks}")
        self.shape = shape
        self.num_blocks = num_blocks
        self.block_size = shape.block_size
        self.dtype = dtype
        self.device = torch.device(device)
        size = (num_blocks, shape.block_size, shape.num_kv_heads, shape.head_dim)
        self.keys = [torch.zeros(size, dtype=dtype, device=self.device) for _ in range(shape.num_layers)]
        self.values = [torch.zeros(size, dtype=dtype, device=self.device) for _ in range(shape.num_layers)]

    @property
    def num_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def bind(self, model: nn.Module) -> None:
        """Give layer i's attention the pool's i-th key and value tensors."""
        layers = attention_layers(model)
        if len(layers) != self.shape.num_layers:
            raise ValueError(f"the model has {len(layers)} attention layers, the cache {self.shape.num_layers}")
        for layer, keys, values in zip(layers, self.keys, self.values):
            layer.k_cache, layer.v_cache = keys, values

    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


def num_blocks_for(
    shape: KVCacheShape,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    configured: int,
    gpu_memory_utilization: float,
) -> int:
    """How many blocks to allocate: the configured count, else what the memory budget holds.

    The runner caps the context length it reports at the pool's size, so any single request the
    validation admits fits once everything else is preempted.
    """
    if configured:
        return configured
    per_block = shape.bytes_per_block(dtype)
    device = torch.device(device)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        # Leave (1 - utilization) of the card to activations, CUDA graphs and other processes.
        budget = free - (1.0 - gpu_memory_utilization) * total
        if budget < per_block:
            raise RuntimeError(
                f"no GPU memory left for the KV cache ({free / 2**30:.1f} GiB free of {total / 2**30:.1f}); "
                "raise GPU_MEMORY_UTILIZATION or set ENGINE_KV_CACHE_BLOCKS"
            )
        return int(budget // per_block)
    return max(1, CPU_BUDGET_BYTES // per_block)
