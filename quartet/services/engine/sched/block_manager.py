"""Which KV blocks each sequence owns: allocation, ref counts and prefix caching. No torch.

The KV pool (``kv_cache.py``) is ``num_blocks`` blocks of ``block_size`` token
slots. A sequence's ``block_table`` lists its blocks in order, so token ``p``
lives in slot ``block_table[p // block_size] * block_size + p % block_size``.

Prefix caching (as in vLLM's automatic prefix caching): once a block is full
and its KV has been computed, it is registered under a hash of its tokens
chained with the previous block's hash, so equal hashes mean equal prefixes.
A new sequence whose leading full blocks hash the same shares those blocks
(ref count + 1) and skips computing them. A block whose ref count drops to 0
goes to the back of the free list but keeps its contents and hash: it can
still be hit until it reaches the front and is handed out for new tokens,
which evicts it (least recently freed first). Hits are checked against the
stored tokens, so a hash collision can never share wrong KV.

Blocks are registered only after their KV is computed (``mark_computed``),
never at allocation: a chunked prefill allocates blocks whose KV arrives in
later steps, and a hit on them would read garbage.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from quartet.services.engine.sched.sequence import Sequence


@dataclass(slots=True)
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None  # set while the block is registered in the prefix cache
    token_ids: tuple[int, ...] = ()


@dataclass(slots=True)
class PrefixCacheStats:
    """Prompt tokens looked up in the prefix cache and how many were found (cumulative)."""

    queried_tokens: int = 0
    hit_tokens: int = 0


@dataclass(slots=True)
class _Lookup:
    hits: list[int] = field(default_factory=list)  # block ids of the leading cached blocks
    num_free_hits: int = 0  # of those, blocks no sequence holds now (they leave the free list)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need at least one block of at least one token, not {num_blocks} x {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Insertion order is eviction order: blocks freed longest ago are reused first.
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._cached: dict[int, int] = {}  # hash -> block id
        self.stats = PrefixCacheStats()

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    def usage(self) -> float:
        return self.num_used_blocks / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # --- admission -------------------------------------------------------------

    def can_allocate(self, seq: Sequence) -> bool:
        """Whether blocks for all of ``seq``'s tokens fit now, counting prefix-cache hits."""
        lookup = self._lookup(seq)
        needed = self.blocks_for(seq.num_tokens) - len(lookup.hits)
        return needed + lookup.num_free_hits <= len(self._free)

    def allocate(self, seq: Sequence) -> None:
        """Give ``seq`` blocks for all its tokens; cached leading blocks are shared and count as computed."""
        if seq.block_table:
            raise ValueError(f"sequence {seq.seq_id} already holds blocks")
        if not self.can_allocate(seq):
            raise RuntimeError(f"no room for sequence {seq.seq_id}; check can_allocate first")
        lookup = self._lookup(seq)
        for block_id in lookup.hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self._free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        while len(seq.block_table) < self.blocks_for(seq.num_tokens):
            seq.block_table.append(self._take_free().block_id)
        seq.num_computed_tokens = len(lookup.hits) * self.block_size
        if self.enable_prefix_caching:
            self.stats.queried_tokens += seq.num_tokens
            self.stats.hit_tokens += seq.num_computed_tokens

    def _lookup(self, seq: Sequence) -> _Lookup:
        lookup = _Lookup()
        if not self.enable_prefix_caching:
            return lookup
        # Only blocks strictly before the last token: it must be computed to get the next token's logits.
        hashes = self._hashes(seq, (seq.num_tokens - 1) // self.block_size)
        for index, block_hash in enumerate(hashes):
            block_id = self._cached.get(block_hash)
            if block_id is None or self.blocks[block_id].token_ids != self._tokens(seq, index):
                break
            lookup.hits.append(block_id)
            lookup.num_free_hits += self.blocks[block_id].ref_count == 0
        return lookup

    # --- growth ----------------------------------------------------------------

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Whether ``seq`` can compute ``num_new_tokens`` more tokens (it may need fresh blocks)."""
        return self._missing(seq, num_new_tokens) <= len(self._free)

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> None:
        """Make room for ``num_new_tokens`` more computed tokens (check ``can_append`` first)."""
        missing = self._missing(seq, num_new_tokens)
        if missing > len(self._free):
            raise RuntimeError(f"no room for sequence {seq.seq_id}; check can_append first")
        for _ in range(missing):
            seq.block_table.append(self._take_free().block_id)

    def _missing(self, seq: Sequence, num_new_tokens: int) -> int:
        return max(0, self.blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table))

    def mark_computed(self, seq: Sequence) -> None:
        """Register ``seq``'s full, computed blocks in the prefix cache (call after each step that computed some)."""
        if not self.enable_prefix_caching:
            return
        num_full = min(seq.num_computed_tokens // self.block_size, len(seq.block_table))
        if num_full <= seq.num_marked_blocks:  # most steps of a decode fill no new block: nothing to do
            return
        hashes = self._hashes(seq, num_full)
        first, seq.num_marked_blocks = seq.num_marked_blocks, num_full
        for index in range(first, num_full):
            block_hash = hashes[index]
            block = self.blocks[seq.block_table[index]]
            if block.hash is not None:
                continue  # registered already (a hit, or marked in an earlier step)
            if block_hash in self._cached:
                continue  # another sequence computed the same prefix first; this copy stays private
            block.hash, block.token_ids = block_hash, self._tokens(seq, index)
            self._cached[block_hash] = block.block_id

    # --- release ---------------------------------------------------------------

    def free(self, seq: Sequence) -> None:
        """Drop ``seq``'s blocks (finished, aborted or preempted); its computed-token count resets."""
        # Last blocks first, so a prefix's tail is evicted before its head (its head is likelier to be shared).
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.hash is None:
                    self._free[block_id] = None
                    self._free.move_to_end(block_id, last=False)  # nothing cached in it: reuse it first
                else:
                    self._free[block_id] = None
        seq.block_table.clear()
        seq.num_computed_tokens = 0
        seq.num_marked_blocks = 0

    def _take_free(self) -> Block:
        block_id, _ = self._free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:  # evict: its old contents are about to be overwritten
            del self._cached[block.hash]
            block.hash, block.token_ids = None, ()
        block.ref_count = 1
        return block

    # --- hashing ---------------------------------------------------------------

    def _tokens(self, seq: Sequence, index: int) -> tuple[int, ...]:
        return tuple(seq.token_ids[index * self.block_size : (index + 1) * self.block_size])

    def _hashes(self, seq: Sequence, count: int) -> list[int]:
        """The chained hashes of ``seq``'s first ``count`` full blocks, memoised on the sequence."""
        hashes = seq.block_hashes
        while len(hashes) < count:
            parent = hashes[-1] if hashes else None
            hashes.append(hash((parent, self._tokens(seq, len(hashes)))))
        return hashes[:count]
