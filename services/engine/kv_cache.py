"""A contiguous KV cache: one slot per running sequence, slots 0..n-1 always in use.

Each layer holds keys and values as ``[slots, kv_heads, capacity, head_dim]``.
Both the number of slots and the capacity grow by doubling (up to
ENGINE_MAX_NUM_SEQS and the context length) and fall back to the minimum
when the engine goes idle, so a short chat costs megabytes rather than the
full context's worth for every possible sequence. When a sequence ends, the
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
        max_slots: int,
        num_kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self.num_layers = num_layers
        self.max_slots = max_slots
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.max_len = max_len
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_slots = 0
        self.capacity = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.reset()

    def reset(self) -> None:
        """Drop everything and go back to the smallest allocation (call only when no sequence is active)."""
        self.num_slots = self.capacity = 0
        self.keys, self.values = [], []
        self.ensure(1, min(MIN_CAPACITY, self.max_len))

    def ensure(self, num_slots: int, length: int) -> None:
        """Make room for ``num_slots`` slots of ``length`` positions, keeping what is cached."""
        if num_slots <= self.num_slots and length <= self.capacity:
            return
        if length > self.max_len:
            raise ValueError(f"KV cache length {length} exceeds the context length {self.max_len}")
        if num_slots > self.max_slots:
            raise ValueError(f"{num_slots} KV slots asked for, at most {self.max_slots}")
        slots, capacity = _grown(self.num_slots, num_slots, self.max_slots), _grown(self.capacity, length, self.max_len)
        shape = (slots, self.num_kv_heads, capacity, self.head_dim)
        keys, values = [], []
        for layer in range(self.num_layers):
            k = torch.zeros(shape, dtype=self.dtype, device=self.device)
            v = torch.zeros(shape, dtype=self.dtype, device=self.device)
            if self.capacity:
                k[: self.num_slots, :, : self.capacity] = self.keys[layer]
                v[: self.num_slots, :, : self.capacity] = self.values[layer]
            keys.append(k)
            values.append(v)
        self.keys, self.values = keys, values
        self.num_slots, self.capacity = slots, capacity

    def move(self, source: int, target: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``source`` into slot ``target``."""
        for layer in range(self.num_layers):
            self.keys[layer][target, :, :length] = self.keys[layer][source, :, :length]
            self.values[layer][target, :, :length] = self.values[layer][source, :, :length]

    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


def _grown(current: int, needed: int, limit: int) -> int:
    """Double from ``current`` (at least 1) until ``needed`` fits, capped at ``limit``."""
    size = max(current, 1)
    while size < needed:
        size *= 2
    return min(max(size, current), limit)
