"""The block manager alone, pure Python: ref counts, growth, prefix-cache hits and eviction."""

from __future__ import annotations

import pytest

from quartet.services.engine.sched.block_manager import BlockManager
from quartet.services.engine.api.request import StoppingCriteria
from quartet.services.engine.sched.sequence import Sequence, new_sequences

BLOCK = 4
_ids = iter(range(1_000_000))


def seq(tokens: list[int]) -> Sequence:
    (s,) = new_sequences(
        first_seq_id=next(_ids),
        n=1,
        prompt_ids=tokens,
        max_tokens=100,
        stopping=StoppingCriteria(),
        eos_token_ids=[0],
        decode=lambda ids: "",
    )
    return s


def computed(manager: BlockManager, s: Sequence) -> Sequence:
    """What the engine does once a step computed the whole sequence."""
    s.num_computed_tokens = s.num_tokens
    manager.mark_computed(s)
    return s


def test_allocate_and_free_count_blocks() -> None:
    manager = BlockManager(8, BLOCK)
    a = seq(list(range(1, 11)))  # 10 tokens: 3 blocks
    assert manager.can_allocate(a)
    manager.allocate(a)
    assert len(a.block_table) == 3 and manager.num_free_blocks == 5 and a.num_computed_tokens == 0
    manager.free(a)
    assert manager.num_free_blocks == 8 and a.block_table == [] and manager.usage() == 0.0


def test_decode_growth_takes_a_block_only_at_a_boundary() -> None:
    manager = BlockManager(3, BLOCK)
    a = seq([1, 2, 3, 4, 5, 6, 7])  # 7 tokens, 2 blocks
    manager.allocate(a)
    a.num_computed_tokens = 7
    a.token_ids.append(8)
    assert manager.can_append(a, 1)
    manager.append_slots(a, 1)  # position 7 still fits block 1
    assert len(a.block_table) == 2
    a.num_computed_tokens = 8
    a.token_ids.append(9)
    manager.append_slots(a, 1)  # position 8 opens block 2
    assert len(a.block_table) == 3 and manager.num_free_blocks == 0
    a.num_computed_tokens = 9
    assert manager.can_append(a, 3) and not manager.can_append(a, 4)
    with pytest.raises(RuntimeError, match="can_append"):
        manager.append_slots(a, 4)


def test_a_shared_prefix_reuses_computed_blocks_and_skips_their_tokens() -> None:
    manager = BlockManager(16, BLOCK)
    prefix = list(range(100, 108))  # two full blocks
    first = computed(manager, _allocated(manager, seq(prefix + [1, 2, 3, 4, 5])))
    second = seq(prefix + [9, 9, 9])
    free_before = manager.num_free_blocks
    manager.allocate(second)
    assert second.block_table[:2] == first.block_table[:2]
    assert second.num_computed_tokens == 8  # only the 3 new tokens are left to compute
    assert free_before - manager.num_free_blocks == 1  # one new block for them, not three
    assert [manager.blocks[b].ref_count for b in second.block_table] == [2, 2, 1]
    assert (manager.stats.queried_tokens, manager.stats.hit_tokens) == (13 + 11, 8)


def test_the_last_token_is_always_recomputed() -> None:
    """An identical prompt hits every block but the one holding its last token: its logits are needed."""
    manager = BlockManager(16, BLOCK)
    prompt = list(range(1, 13))  # exactly three blocks
    computed(manager, _allocated(manager, seq(prompt)))
    again = _allocated(manager, seq(prompt))
    assert again.num_computed_tokens == 8


def test_equal_blocks_after_different_prefixes_do_not_hit() -> None:
    manager = BlockManager(16, BLOCK)
    computed(manager, _allocated(manager, seq([1, 2, 3, 4, 5, 6, 7, 8, 9])))
    other = _allocated(manager, seq([0, 2, 3, 4, 5, 6, 7, 8, 9]))  # block 1 equal, block 0 not
    assert other.num_computed_tokens == 0


def test_uncomputed_blocks_are_never_hit() -> None:
    """A chunked prefill's later blocks are allocated before their KV exists: nobody may share them yet."""
    manager = BlockManager(16, BLOCK)
    prompt = list(range(1, 14))
    first = _allocated(manager, seq(prompt))
    first.num_computed_tokens = 4  # one chunk done
    manager.mark_computed(first)
    assert _allocated(manager, seq(prompt)).num_computed_tokens == 4


def test_freed_blocks_stay_hittable_until_evicted_least_recently_freed_first() -> None:
    manager = BlockManager(4, BLOCK)
    prompt = list(range(1, 10))  # 3 blocks, 2 of them full and cached
    first = computed(manager, _allocated(manager, seq(prompt)))
    manager.free(first)
    assert manager.num_free_blocks == 4
    hit = _allocated(manager, seq(prompt))
    assert hit.num_computed_tokens == 8  # cached although nobody held them
    manager.free(hit)
    # The uncached blocks go first; the third block a filler needs evicts the prefix's tail, not its head.
    filler = _allocated(manager, seq(list(range(50, 59))))
    assert manager.num_free_blocks == 1
    manager.free(filler)
    assert _allocated(manager, seq(prompt)).num_computed_tokens == 4


def test_can_allocate_counts_hits_on_free_blocks_as_taken() -> None:
    manager = BlockManager(3, BLOCK)
    prompt = list(range(1, 10))  # 3 blocks
    manager.free(computed(manager, _allocated(manager, seq(prompt))))
    again = seq(prompt)
    assert manager.can_allocate(again)  # 2 free hits + 1 new block = the 3 free blocks
    manager.allocate(again)
    assert manager.num_free_blocks == 0
    assert not manager.can_allocate(seq([7]))


def test_disabled_prefix_caching_never_hits() -> None:
    manager = BlockManager(16, BLOCK, enable_prefix_caching=False)
    prompt = list(range(1, 13))
    computed(manager, _allocated(manager, seq(prompt)))
    assert _allocated(manager, seq(prompt)).num_computed_tokens == 0


def _allocated(manager: BlockManager, s: Sequence) -> Sequence:
    manager.allocate(s)
    return s
