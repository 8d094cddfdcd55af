"""Paged attention kernels (decode and prefill) against the torch reference on scattered pools.

Blocks no sequence owns and slots past a sequence's length hold NaN: a kernel that reads one
turns its output NaN, so every case also proves the kernels stay inside the table and lengths.
"""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.attention._launch import DecodeConfig, PrefillConfig, decode_config
from quartet.kernels.attention.decode import paged_decode
from quartet.kernels.attention.prefill import paged_prefill, plan_for
from quartet.kernels.attention.reference import paged_attention_torch

BLOCK = 16
TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def make_pool(seq_lens: list[int], kv_heads: int, dim: int, dtype: torch.dtype, device, gen, spare: int = 5):
    """Random K/V for each sequence on shuffled blocks of a NaN-filled pool; tables padded with a NaN block."""
    counts = [-(-n // BLOCK) for n in seq_lens]
    num_blocks = sum(counts) + spare
    order = torch.randperm(num_blocks, generator=gen, device=device).tolist()
    k = torch.full((num_blocks, BLOCK, kv_heads, dim), float("nan"), dtype=dtype, device=device)
    v = torch.full_like(k, float("nan"))
    width = max(counts) + 2
    tables = torch.full((len(seq_lens), width), order[-1], dtype=torch.long, device=device)
    for i, (n, count) in enumerate(zip(seq_lens, counts)):
        blocks = [order.pop(0) for _ in range(count)]
        tables[i, :count] = torch.tensor(blocks, device=device)
        offsets = torch.arange(n, device=device)
        slots = torch.tensor(blocks, device=device)[offsets // BLOCK] * BLOCK + offsets % BLOCK
        k.view(-1, kv_heads, dim)[slots] = torch.randn(n, kv_heads, dim, generator=gen, device=device).to(dtype)
        v.view(-1, kv_heads, dim)[slots] = torch.randn(n, kv_heads, dim, generator=gen, device=device).to(dtype)
    return k, v, tables


def check(out: torch.Tensor, want: torch.Tensor) -> None:
    tol = TOL[want.dtype]
    assert not out.isnan().any(), "the kernel read a slot outside a sequence's blocks or length"
    torch.testing.assert_close(out.float(), want.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("window", [None, 8, 100])
@pytest.mark.parametrize("with_sinks", [False, True])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_matches_reference(window: int | None, with_sinks: bool, splits: int, device, gen) -> None:
    heads, kv_heads, dim = 4, 2, 32
    seq_lens = [1, 5, 16, 17, 70]
    k, v, tables = make_pool(seq_lens, kv_heads, dim, torch.float32, device, gen)
    q = torch.randn(len(seq_lens), heads, dim, generator=gen, device=device)
    sinks = torch.randn(heads, generator=gen, device=device) if with_sinks else None
    lens = torch.tensor(seq_lens, device=device)
    out = paged_decode(q, k, v, tables, lens, scale=dim**-0.5, sliding_window=window, sinks=sinks,
                       config=DecodeConfig(block_n=16 if splits > 1 else 32, num_splits=splits))
    want = paged_attention_torch(q, k, v, tables, query_starts=range(len(seq_lens)), query_lens=[1] * len(seq_lens),
                                 seq_lens=seq_lens, scale=dim**-0.5, sliding_window=window, sinks=sinks)
    check(out, want)


def test_decode_bf16_gqa_strided_inputs_and_default_split(device, gen) -> None:
    """bf16 pool, 4 query heads per KV head, q a strided view (as sliced out of a fused qkv), a table
    that is a column slice of a wider one (as CUDA graphs pass), and the default launch config."""
    heads, kv_heads, dim = 8, 2, 16
    seq_lens = [33, 2, 48]
    k, v, tables = make_pool(seq_lens, kv_heads, dim, torch.bfloat16, device, gen)
    wide = torch.cat([tables, tables], dim=1)
    qkv = torch.randn(len(seq_lens), heads + 2 * kv_heads, dim, generator=gen, device=device).to(torch.bfloat16)
    q = qkv[:, :heads]
    sinks = torch.randn(heads, generator=gen, device=device)
    lens = torch.tensor(seq_lens, device=device, dtype=torch.int32)
    out = paged_decode(q, k, v, wide[:, : tables.shape[1]], lens, scale=0.3, sliding_window=40, sinks=sinks)
    want = paged_attention_torch(q, k, v, tables, query_starts=range(3), query_lens=[1] * 3, seq_lens=seq_lens,
                                 scale=0.3, sliding_window=40, sinks=sinks)
    check(out, want)


def test_decode_split_heuristic_fills_the_gpu_and_ignores_lengths_and_odd_batches() -> None:
    assert decode_config(256, 8, 80, 16, sms=132).num_splits == 1
    small = decode_config(1, 8, 72, 16, sms=132)
    assert small.num_splits > 8 and small.num_splits * 8 >= 132
    # The split count is a compile-time constant: it follows the batch's power of two alone, so an eager
    # step's odd batch of decodes compiles nothing the decode graphs' power-of-two buckets did not.
    assert decode_config(3, 8, 5, 16, sms=132) == decode_config(4, 8, 4000, 16, sms=132)
    assert decode_config(5, 8, 1, 16, sms=132).num_splits == decode_config(8, 8, 1, 16, sms=132).num_splits


@pytest.mark.parametrize("window", [None, 7, 100])
@pytest.mark.parametrize("with_sinks", [False, True])
def test_prefill_chunks_after_context_match_reference(window: int | None, with_sinks: bool, device, gen) -> None:
    """A whole prompt, a chunk after cached context, a one-token tail and a prompt longer than a query tile."""
    heads, kv_heads, dim = 4, 2, 16
    query_lens, seq_lens = [9, 20, 1, 37], [9, 45, 6, 37]
    k, v, tables = make_pool(seq_lens, kv_heads, dim, torch.float32, device, gen)
    starts = [sum(query_lens[:i]) for i in range(len(query_lens))]
    q = torch.randn(sum(query_lens), heads, dim, generator=gen, device=device)
    sinks = torch.randn(heads, generator=gen, device=device) if with_sinks else None
    cfg = PrefillConfig(block_m=16, block_n=16, num_warps=4)
    plan = plan_for(starts, query_lens, seq_lens, groups=heads // kv_heads, device=device, config=cfg)
    out = paged_prefill(q, k, v, tables, query_starts=starts, query_lens=query_lens, seq_lens=seq_lens,
                        scale=dim**-0.5, sliding_window=window, sinks=sinks, plan=plan, config=cfg)
    want = paged_attention_torch(q, k, v, tables, query_starts=starts, query_lens=query_lens, seq_lens=seq_lens,
                                 scale=dim**-0.5, sliding_window=window, sinks=sinks)
    check(out, want)


def test_prefill_bf16_uneven_groups_default_config(device, gen) -> None:
    """6 query heads over 2 KV heads (3 a group: tiles hold 42 of 128 rows' worth of tokens), bf16."""
    heads, kv_heads, dim = 6, 2, 32
    query_lens, seq_lens = [50, 3], [50, 19]
    k, v, tables = make_pool(seq_lens, kv_heads, dim, torch.bfloat16, device, gen)
    q = torch.randn(53, heads, dim, generator=gen, device=device).to(torch.bfloat16)
    out = paged_prefill(q, k, v, tables, query_starts=[0, 50], query_lens=query_lens, seq_lens=seq_lens,
                        scale=dim**-0.5, sliding_window=16)
    want = paged_attention_torch(q, k, v, tables, query_starts=[0, 50], query_lens=query_lens, seq_lens=seq_lens,
                                 scale=dim**-0.5, sliding_window=16)
    check(out, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_decode_replays_in_a_cuda_graph_with_new_lengths(device, gen) -> None:
    """Capture once, then change lengths and tables in place (longer, shorter, padding rows) and replay."""
    heads, kv_heads, dim, batch, width = 64, 8, 64, 4, 16
    k, v, tables = make_pool([width * BLOCK] * batch, kv_heads, dim, torch.bfloat16, device, gen)
    sinks = torch.randn(heads, generator=gen, device=device)
    q = torch.randn(batch, heads, dim, generator=gen, device=device).to(torch.bfloat16)
    lens = torch.full((batch,), 3, dtype=torch.long, device=device)
    static_tables = tables[:, :width].clone()
    for window in (None, 128):
        args = (q, k, v, static_tables, lens)
        paged_decode(*args, scale=0.125, sliding_window=window, sinks=sinks)  # compile outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = paged_decode(*args, scale=0.125, sliding_window=window, sinks=sinks)
        for new_lens in ([1, 200, 256, 17], [256, 1, 1, 129]):
            lens.copy_(torch.tensor(new_lens))
            static_tables.copy_(tables[torch.randperm(batch, generator=gen, device=device), :width])
            graph.replay()
            want = paged_attention_torch(q, k, v, static_tables, query_starts=range(batch), query_lens=[1] * batch,
                                         seq_lens=new_lens, scale=0.125, sliding_window=window, sinks=sinks)
            check(out, want)
