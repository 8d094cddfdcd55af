"""``group_by_expert`` in one Triton launch: (token, slot) pairs sorted by expert, cut into tiles.

Why: the torch version (``moe_layout.group_by_expert_torch``, the reference) is about two dozen
small kernels (a radix sort, a scatter-add, cumulative sums, a search, casts); inside a decode
step's CUDA graph each still costs a few microseconds of GPU time, a sizeable share of a MoE
layer at decode batches. Here a counting sort, stable by construction, so the outputs are
identical to the reference, with one program an expert:

1. every program counts the pairs of every expert, chunk by chunk (a one-hot ``[chunk,
   experts]`` summed; no scan), so it knows where its expert's segment starts;
2. program ``e`` places expert ``e``'s pairs: its segment start plus a running sum of a
   one-dimensional ``[chunk]`` hit mask (the earlier one-program kernel scanned the whole
   ``[chunk, experts]`` one-hot: 13-14 us at 256 and 1024 pairs on the H100 against 3.3-3.6 and
   5.6-7.0 us here, CUDA-graph replays, docs/perf-log/engine-gpu.md "Decode step at 64 and 256");
3. each tile's expert (how many experts' tiles end at or before it), first and end row, every
   ``experts``-th chunk of tiles to a program.

Fixed grid and sizes, no host sync: graph-safe.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# One-hot elements a chunk: [chunk, experts] int32 in registers (4 warps: 64 a thread).
_ONE_HOT = 8192
# "parallel": one program an expert (_group_kernel); "single": one program in all.
GROUPING = "parallel"


@triton.jit
def _group_kernel(
    ids_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, expert_end_ptr,
    P, E, MAX_TILES, BLOCK,
    EP: tl.constexpr, CHUNK: tl.constexpr, TCHUNK: tl.constexpr,
):
    """Program ``e`` places expert ``e``'s pairs, so the scans are one-dimensional ``[CHUNK]``
    ones instead of ``[CHUNK, experts]``; every program counts all experts (a one-hot sum, no
    scan) to know where its segment starts, and writes every ``E``-th chunk of tiles."""
    me = tl.program_id(0)
    e = tl.arange(0, EP)
    e_ok = e < E
    counts = tl.zeros((EP,), tl.int32)
    for c in range(0, P, CHUNK):
        p = c + tl.arange(0, CHUNK)
        ids = tl.load(ids_ptr + p, mask=p < P, other=-1).to(tl.int32)  # -1: no expert
        counts += tl.sum((ids[:, None] == e[None, :]).to(tl.int32), axis=0)
    seg_end = tl.cumsum(counts, 0)
    seg_start = seg_end - counts
    tiles = (counts + BLOCK - 1) // BLOCK
    tiles_end = tl.cumsum(tiles, 0)
    tiles_first = tiles_end - tiles
    mine = e == me
    tl.store(expert_end_ptr + e, seg_end, mask=mine)

    seen = tl.sum(tl.where(mine, seg_start, 0), axis=0)  # the next row of this expert's segment
    for c in range(0, P, CHUNK):
        p = c + tl.arange(0, CHUNK)
        ok = p < P
        hit = (tl.load(ids_ptr + p, mask=ok, other=-1).to(tl.int32) == me).to(tl.int32)
        tl.store(order_ptr + seen + tl.cumsum(hit, 0) - 1, p, mask=hit != 0)
        seen += tl.sum(hit, axis=0)

    for c in range(me * TCHUNK, MAX_TILES, E * TCHUNK):
        i = c + tl.arange(0, TCHUNK)
        expert = tl.sum(((tiles_end[None, :] <= i[:, None]) & e_ok[None, :]).to(tl.int32), axis=1)
        valid = expert < E
        expert = tl.minimum(expert, E - 1)
        pick = e[None, :] == expert[:, None]
        first_row = tl.sum(tl.where(pick, seg_start[None, :], 0), axis=1)
        first_tile = tl.sum(tl.where(pick, tiles_first[None, :], 0), axis=1)
        last_row = tl.sum(tl.where(pick, seg_end[None, :], 0), axis=1)
        start = first_row + (i - first_tile) * BLOCK
        end = tl.where(valid, tl.minimum(start + BLOCK, last_row), start)
        ok = i < MAX_TILES
        tl.store(tile_expert_ptr + i, expert, mask=ok)
        tl.store(tile_start_ptr + i, start, mask=ok)
        tl.store(tile_end_ptr + i, end, mask=ok)


def group_by_expert_triton(
    ids: torch.Tensor, num_experts: int, block: int, max_tiles: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(order, tile_expert, tile_start, tile_end, expert_end), int32, as ``group_by_expert_torch``."""
    flat = ids.reshape(-1)
    if not flat.is_contiguous():
        flat = flat.contiguous()
    pairs = flat.numel()
    dev = ids.device
    order = torch.empty(pairs, dtype=torch.int32, device=dev)
    tile_expert, tile_start, tile_end = (torch.empty(max_tiles, dtype=torch.int32, device=dev) for _ in range(3))
    expert_end = torch.empty(num_experts, dtype=torch.int32, device=dev)
    ep = triton.next_power_of_2(num_experts)
    # Chunks fixed by the expert count alone, so one compile serves every batch size.
    _group_kernel[(num_experts,)](
        flat, order, tile_expert, tile_start, tile_end, expert_end,
        pairs, num_experts, max_tiles, block,
        EP=ep, CHUNK=max(16, min(1024, _ONE_HOT // ep)), TCHUNK=16, num_warps=4,
    )
    return order, tile_expert, tile_start, tile_end, expert_end
