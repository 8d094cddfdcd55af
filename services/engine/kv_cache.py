"""A contiguous KV cache: one slot per running sequence, slots 0..n-1 always in use.

Each layer holds keys and values as ``[num_slots, kv_heads, capacity, head_dim]``.
Capacity grows by doubling up to the context length, so a short chat costs
megabytes rather than the full context's worth. When a sequence ends, the
last occupied slot moves into its place, so a batched decode always reads the
dense prefix ``[:batch]`` without gathering.

This is the first version's cache; the paged block cache replaces it when
continuous batching lands.
"""

from __future__ import annotations

import torch

#: Smallest capacity allocated; doubling from here wastes at most half.
MIN_CAPACITY = 256


class KVCache:
    def __init__(
        self,
        *,
        num_layers: int,
        num_slots: int,
        num_kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self.num_layers = num_layers
        self.num_slots = num_slots
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.max_len = max_len
        self.dtype = dtype
        self.device = torch.device(device)
        self.capacity = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.ensure_capacity(min(MIN_CAPACITY, max_len))

    def ensure_capacity(self, length: int) -> None:
        """Make room for ``length`` positions in every slot, copying what is cached."""
        if length <= self.capacity:
            return
        if length > self.max_len:
            raise ValueError(f"KV cache length {length} exceeds the context length {self.max_len}")
        capacity = max(self.capacity, MIN_CAPACITY)
        while capacity < length:
            capacity *= 2
        capacity = min(capacity, self.max_len)
        shape = (self.num_slots, self.num_kv_heads, capacity, self.head_dim)
        keys, values = [], []
        for layer in range(self.num_layers):
            k = torch.zeros(shape, dtype=self.dtype, device=self.device)
            v = torch.zeros(shape, dtype=self.dtype, device=self.device)
            if self.capacity:
                k[:, :, : self.capacity] = self.keys[layer]
                v[:, :, : self.capacity] = self.values[layer]
            keys.append(k)
            values.append(v)
        self.keys, self.values, self.capacity = keys, values, capacity

    def move(self, source: int, target: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``source`` into slot ``target``."""
        for layer in range(self.num_layers):
            self.keys[layer][target, :, :length] = self.keys[layer][source, :, :length]
            self.values[layer][target, :, :length] = self.values[layer][source, :, :length]

    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))
