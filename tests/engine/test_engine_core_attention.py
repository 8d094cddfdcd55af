"""Paged attention against the obvious definition: whole prompts, chunks after cached context, decode batches,
sliding windows and sinks, with blocks scattered over the pool."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from quartet.services.engine.layers.attention import Attention, AttentionMetadata, reference_attention

# The Triton backend runs here in Triton's CPU interpreter, which must be chosen before its kernels are
# decorated (as tests/kernels/conftest.py does for the kernel tests).
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") is None:
    os.environ["TRITON_INTERPRET"] = "1"
    for _name in [m for m in sys.modules if m.startswith("quartet.kernels.attention.")]:
        del sys.modules[_name]

HEADS, KV_HEADS, DIM, BLOCK = 4, 2, 8, 4
# These tests keep their tensors on the CPU; on a GPU machine the kernels' own tests cover CUDA.
BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), reason="CPU tensors need TRITON_INTERPRET=1"))]


def layer(window: int | None = None, num_blocks: int = 64, backend: str = "torch") -> Attention:
    attn = Attention(HEADS, KV_HEADS, DIM, scale=DIM**-0.5, sliding_window=window, backend=backend)
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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("window", [None, 3, 6])
@pytest.mark.parametrize("with_sinks", [False, True])
def test_chunked_prefill_then_batched_decode_matches_reference(
    window: int | None, with_sinks: bool, backend: str
) -> None:
    """Two sequences on scattered blocks: a 9-token prompt in chunks 5+4, a 6-token prompt whole, then 3 decode
    steps; every output row must equal the full-sequence reference at that position."""
    sinks = torch.randn(HEADS) if with_sinks else None
    attn = layer(window, backend=backend)
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_padding_rows_on_the_scratch_block_leave_real_rows_alone(backend: str) -> None:
    """Decode over fixed-width tables as DecodeGraphs lays them out: real rows' tables padded with the scratch
    block, padding rows of length 1 writing token 0 into it; the real rows match a step without padding."""
    scratch, width = 63, 4
    attn = layer(5, backend=backend)
    sinks = torch.randn(HEADS)
    lengths, tables = [7, 3], [[10, 11], [20]]
    data = [qkv(n, seed) for seed, n in enumerate(lengths, start=7)]
    prompt = AttentionMetadata.build(query_lens=lengths, seq_lens=lengths, block_tables=tables, block_size=BLOCK)
    attn(*(torch.cat([d[j] for d in data]) for j in range(3)), prompt, sinks=sinks)
    step = [qkv(1, seed) for seed in (30, 31)]
    q, k, v = (torch.cat([s[j] for s in step]) for j in range(3))
    plain = AttentionMetadata.build(query_lens=[1, 1], seq_lens=[8, 4], block_tables=tables, block_size=BLOCK)
    padded = AttentionMetadata(
        block_size=BLOCK, num_prefills=0, query_lens=[1] * 4, seq_lens=[width * BLOCK] * 4,
        query_starts=[0, 1, 2, 3], positions=torch.tensor([7, 3, 0, 0]),
        slot_mapping=torch.cat([plain.slot_mapping, torch.full((2,), scratch * BLOCK)]),
        block_tables=torch.tensor([[10, 11, scratch, scratch], [20, scratch, scratch, scratch], [scratch] * 4,
                                   [scratch] * 4]),
        seq_lens_tensor=torch.tensor([8, 4, 1, 1]),
    )
    want = attn(q, k, v, plain, sinks=sinks)
    pad_q, pad_kv = torch.randn(2, HEADS, DIM), torch.randn(2, KV_HEADS, DIM)
    got = attn(torch.cat([q, pad_q]), torch.cat([k, pad_kv]), torch.cat([v, pad_kv]), padded, sinks=sinks)
    assert not got.isnan().any()
    torch.testing.assert_close(got[:2], want, rtol=1e-5, atol=1e-5)


def test_backend_switch_reads_engine_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    from quartet.services.engine.layers import attention as module

    for value, expected in (("torch", "torch"), (" Triton ", "triton"), ("", "auto")):
        monkeypatch.setenv("ENGINE_ATTENTION", value)
        module.attention_backend.cache_clear()
        assert Attention(HEADS, KV_HEADS, DIM, scale=1.0).backend == expected
    monkeypatch.setenv("ENGINE_ATTENTION", "flash")
    module.attention_backend.cache_clear()
    with pytest.raises(ValueError, match="ENGINE_ATTENTION"):
        Attention(HEADS, KV_HEADS, DIM, scale=1.0)
    monkeypatch.delenv("ENGINE_ATTENTION")
    module.attention_backend.cache_clear()
