"""How one forward step's tokens map onto sequences and KV blocks (the runner builds it, every layer reads it).

See ``attention.py`` for the interface it is part of; it is re-exported there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(slots=True)
class AttentionMetadata:
    """How one forward step's tokens map onto sequences and KV blocks; built by the runner per step."""

    block_size: int
    num_prefills: int  # sequences [0, num_prefills) bring several tokens; the rest one (decode)
    query_lens: list[int]  # new tokens per sequence this step
    seq_lens: list[int]  # cached tokens per sequence after this step (context + new)
    query_starts: list[int]  # offset of each sequence's first new token in the step's token axis
    positions: torch.Tensor  # [T] int64, position of each new token in its sequence
    slot_mapping: torch.Tensor  # [T] int64, flat pool index where each new token's K/V is written
    block_tables: torch.Tensor  # [B, max_blocks] int64, padded with block 0 (masked out)
    seq_lens_tensor: torch.Tensor  # [B] int64
    _masks: dict[Any, Any] = field(default_factory=dict)  # per-step values shared by layers (masks, kernel plans)

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens)

    @property
    def num_tokens(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_prefill_tokens(self) -> int:
        return sum(self.query_lens[: self.num_prefills])

    @property
    def num_decodes(self) -> int:
        return self.num_seqs - self.num_prefills

    def last_token_indices(self) -> list[int]:
        """Index in the token axis of each sequence's last new token (where its next-token logits come from)."""
        return [start + length - 1 for start, length in zip(self.query_starts, self.query_lens)]

    @classmethod
    def build(
        cls,
        *,
        query_lens: Sequence[int],
        seq_lens: Sequence[int],
        block_tables: Sequence[Sequence[int]],
        block_size: int,
        device: torch.device | str = "cpu",
        upload: Callable[[list[int]], torch.Tensor] | None = None,
        width_multiple: int = 1,
    ) -> AttentionMetadata:
        """Lay out a step; sequences with more than one new token must come before those with one.

        The integer tensors travel to ``device`` in one copy: ``upload`` (host ints -> a device int64
        tensor) lets the runner use a pinned, non-blocking one. A plain ``torch.tensor`` copy to a GPU
        waits for the stream, so it would stall a step launched while the previous one still runs.
        ``width_multiple`` pads the block tables' width (with block 0, never read): the width is their
        row stride, which Triton specializes kernels on, so one multiple of 16 keeps every step on the
        kernels already compiled.
        """
        query_lens, seq_lens = list(query_lens), list(seq_lens)
        if not (len(query_lens) == len(seq_lens) == len(block_tables)) or not query_lens:
            raise ValueError("query_lens, seq_lens and block_tables need one entry per sequence, at least one")
        num_prefills = sum(1 for n in query_lens if n > 1)
        if any(n > 1 for n in query_lens[num_prefills:]) or any(n < 1 for n in query_lens):
            raise ValueError("multi-token (prefill) sequences go first, then one-token (decode) sequences")
        starts, positions, slots = [], [], []
        total = 0
        for n, length, table in zip(query_lens, seq_lens, block_tables):
            if not 0 < n <= length or len(table) * block_size < length:
                raise ValueError(f"sequence of {length} tokens, {n} new, does not fit {len(table)} blocks")
            starts.append(total)
            total += n
            for p in range(length - n, length):
                positions.append(p)
                slots.append(table[p // block_size] * block_size + p % block_size)
        width = -(-max(len(t) for t in block_tables) // width_multiple) * width_multiple
        # Each part starts 16-byte aligned (an even int64 offset): Triton specializes kernels on their
        # pointers' alignment, so a part that is sometimes misaligned compiles a second variant.
        flat = positions + [0] * (total % 2)
        slots_at = len(flat)
        flat += slots + [0] * (total % 2)
        tables_at = len(flat)
        for table in block_tables:
            flat += table
            flat += [0] * (width - len(table))
        flat += [0] * (len(flat) % 2)
        lens_at = len(flat)
        flat += seq_lens
        values = upload(flat) if upload is not None else torch.tensor(flat, dtype=torch.long, device=device)
        return cls(
            block_size=block_size,
            num_prefills=num_prefills,
            query_lens=query_lens,
            seq_lens=seq_lens,
            query_starts=starts,
            positions=values[:total],
            slot_mapping=values[slots_at : slots_at + total],
            block_tables=values[tables_at : tables_at + len(block_tables) * width].view(len(block_tables), width),
            seq_lens_tensor=values[lens_at:],
        )

    @classmethod
    def contiguous(
        cls, prompt_lens: Sequence[int], *, block_size: int = 16, device: torch.device | str = "cpu"
    ) -> AttentionMetadata:
        """Whole prompts from position 0 on consecutive blocks 0, 1, 2, ... (tests and one-off forwards)."""
        tables, next_block = [], 0
        for n in prompt_lens:
            count = -(-n // block_size)
            tables.append(list(range(next_block, next_block + count)))
            next_block += count
        order = sorted(range(len(prompt_lens)), key=lambda i: prompt_lens[i] == 1)  # prefills first
        return cls.build(
            query_lens=[prompt_lens[i] for i in order],
            seq_lens=[prompt_lens[i] for i in order],
            block_tables=[tables[i] for i in order],
            block_size=block_size,
            device=device,
        )

    def decode_blocks(self) -> torch.Tensor:
        """The decode sequences' block tables, cut to the longest one and flattened [B_decode * blocks]."""
        blocks = self._masks.get("blocks")
        if blocks is None:
            width = -(-max(self.seq_lens[self.num_prefills :]) // self.block_size)
            blocks = self.block_tables[self.num_prefills :, :width].reshape(-1)
            self._masks["blocks"] = blocks
        return blocks

    def decode_mask(self, sliding_window: int | None) -> torch.Tensor:
        """[B_decode, 1, 1, L] bool: which gathered key positions each decode token sees (shared by layers)."""
        mask = self._masks.get(sliding_window)
        if mask is None:
            lens = self.seq_lens_tensor[self.num_prefills :].view(-1, 1)
            width = max(self.seq_lens[self.num_prefills :])
            keys = torch.arange(width, device=lens.device).view(1, -1)
            mask = keys < lens
            if sliding_window is not None:
                mask &= keys > lens - 1 - sliding_window
            mask = mask.view(-1, 1, 1, width)
            self._masks[sliding_window] = mask
        return mask
