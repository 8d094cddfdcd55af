"""Paged attention against the obvious definition: whole prompts, chunks after cached context, decode batches,
sliding windows and sinks, with blocks scattered over the pool."""

from __future__ import annotations

import pytest
import torch

from services.engine.layers.attention import Attention, AttentionMetadata, reference_attention

HEADS, KV_HEADS, DIM, BLOCK = 4, 2, 8, 4


def layer(window: int | None = None, num_blocks: int = 64) -> Attention:
    attn = Attention(HEADS, KV_HEADS, DIM, scale=DIM**-0.5, sliding_window=window)
    attn.k_cache = torch.zeros(num_blocks, BLOCK, KV_HEADS, DIM)
    attn.v_cache = torch.zeros(num_blocks, BLOCK, KV_HEADS, DIM)
    return attn


def qkv(length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(length, HEADS, DIM, generator=g),
        torch.randn(length, KV_HEADS, DIM, generator=g),
        torch.randn(length, KV_HEADS, DIM, generator=g),
    )


@pytest.mark.parametrize("window", [None, 3, 6])
@pytest.mark.parametrize("with_sinks", [False, True])
def test_chunked_prefill_then_batched_decode_matches_reference(window: int | None, with_sinks: bool) -> None:
    """Two sequences on scattered blocks: a 9-token prompt in chunks 5+4, a 6-token prompt whole, then 3 decode
    steps; every output row must equal the full-sequence reference at that position."""
    sinks = torch.randn(HEADS) if with_sinks else None
    attn = layer(window)
    lengths = [9 + 3, 6 + 4]
    data = [qkv(n, seed) for seed, n in enumerate(lengths)]
    tables = [[17, 3, 40], [8, 2, 33]]
    expected = [reference_attention(*d, scale=attn.scale, sliding_window=window, sinks=sinks) for d in data]

    def step(spans: list[tuple[int, int, int]]) -> None:  # (sequence, first new position, new tokens)
        meta = AttentionMetadata.build(
            query_lens=[n for _, _, n in spans],
            seq_lens=[p + n for _, p, n in spans],
            block_tables=[tables[s] for s, _, _ in spans],
            block_size=BLOCK,
        )
        q, k, v = (torch.cat([data[s][j][p : p + n] for s, p, n in spans]) for j in range(3))
        out = attn(q, k, v, meta, sinks=sinks).view(-1, HEADS, DIM)
        want = torch.cat([expected[s][p : p + n] for s, p, n in spans])
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)

    step([(0, 0, 5), (1, 0, 6)])  # a first chunk and a whole prompt
    step([(0, 5, 4), (1, 6, 1)])  # the second chunk reads the first from the pool; the other sequence decodes
    for t in range(3):  # both decode together
        step([(0, 9 + t, 1), (1, 7 + t, 1)])


def test_contiguous_layout_puts_prefills_first_and_points_at_last_tokens() -> None:
    meta = AttentionMetadata.contiguous([1, 5, 3], block_size=BLOCK)
    assert meta.query_lens == [5, 3, 1] and meta.num_prefills == 2 and meta.num_decodes == 1
    assert meta.last_token_indices() == [4, 7, 8]
    assert meta.positions.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0]
    assert meta.block_tables.shape == (3, 2)


def test_build_rejects_a_decode_before_a_prefill_and_a_short_table() -> None:
    with pytest.raises(ValueError, match="go first"):
        AttentionMetadata.build(query_lens=[1, 3], seq_lens=[4, 3], block_tables=[[0, 1], [2]], block_size=BLOCK)
    with pytest.raises(ValueError, match="does not fit"):
        AttentionMetadata.build(query_lens=[5], seq_lens=[5], block_tables=[[0]], block_size=BLOCK)


def test_an_unbound_layer_says_what_is_missing() -> None:
    attn = Attention(HEADS, KV_HEADS, DIM, scale=1.0)
    q, k, v = qkv(2, 0)
    with pytest.raises(RuntimeError, match="KVCache.bind"):
        attn(q, k, v, AttentionMetadata.contiguous([2], block_size=BLOCK))
