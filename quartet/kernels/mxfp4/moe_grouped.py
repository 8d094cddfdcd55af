"""MoE grouped path for decode batches (64-4096 pairs): expert tiles over short, unmasked K steps.

Same grouping as before (``group_by_expert``: sorted pairs cut into tiles of ``block`` rows
of one expert; empty tiles skipped), so it stays graph-safe: fixed grid, no host sync.
What changed, and why (the earlier kernel, ``moe.py``'s ``_gate_up_kernel``):

* The earlier tiles decoded ``BN x 256`` codes per K step for each of two weights: ptxas
  gives them 255 registers and 100-500 bytes of spills, and the K mask (2880 is not a
  multiple of 256) made every code load scalar. Here K steps are ``BK`` = 64 (2880 = 45 x
  64), unmasked so codes and activations load as vectors, with a peeled masked step only
  where K needs one. Most of the gain measured on the H100 came from the short K step (the
  earlier kernel at BK 64 got most of it too; docs/perf-log/kernels-mxfp4.md, "MoE grouped path").
* ``block`` follows the expected busiest expert (``grouped_config``), so most experts are
  one tile and each weight is read and decoded once.
* ``w_left`` picks the orientation of the tile product: the weight as the left operand
  (``acc[BN, BM]``, the decoded tile feeds the tensor cores from registers) or the right one
  (``acc[BM, BN]``, the decoded tile goes through shared memory as the MMA's B; below 64
  rows the compiler picks Ampere-style MMAs). Right was as fast or faster at every size
  measured (351 against 391 us at 64 pairs), so it is the default.

Run 3 (Nsight Compute at 1024 pairs: issue-bound at half the issue slots, with too few
warps to hide the per-step chain of scale load, decode, shared-memory store, barrier and
MMA wait) added three options, the default from ``PAIRED_MIN_PAIRS`` on fma8 experts:

* ``decode="bf16x2"`` (``_bf16x2.py``): two weights per shift, mask and multiply, no fp32
  conversion: a third fewer instructions a weight; gate_up 356 -> 260 us under ncu.
* ``prefetch_scales``: the scale bytes (too narrow for the asynchronous-copy pipeline) of
  step t+1 load during step t instead of stalling step t+1.
* ``pair_rows``: gate and up rows interleaved in one tile, one decode, one barrier and one
  twice-as-wide MMA a step instead of two of each.

Runs 4-6 (issue 4): below 64-row tiles the paired tile takes the weight as the MMA's left
operand (gate and up rows stacked, split once after the loop), since fewer than 64 activation
rows as the MMA's M get Ampere-style MMAs; paired tiles from 64 pairs; ``down_warps``.

Down writes each pair's routing-weighted fp32 row; the k slots are summed after, in a
fixed order (no atomics on data: deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._epilogue import sum_slots
from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._matmul import code_pointer
from quartet.kernels.mxfp4._grouped_paired import gate_up_paired_kernel
from quartet.kernels.mxfp4._grouped_tile import (acc_cols, step_acts, step_scales, step_weight, swiglu_rows_store, tile_mma,
                                         tile_rows, weight_k_loop)
from quartet.kernels.mxfp4._tile import row_starts
from quartet.kernels.mxfp4.layout import FMA8_LAYOUTS, layout_code
from quartet.kernels.mxfp4.moe_layout import ExpertGroups, MoEWeights

# How a weight tile becomes bf16 MMA operands: "f32" (``_tile.dequant_tile``, then a conversion)
# or "bf16x2" (``_bf16x2.py``: two weights per instruction, fma8 codes only; the interpreter
# runs the f32 decode for it, the values being the same).
DECODES = ("f32", "bf16x2")


@dataclass(frozen=True, slots=True)
class GroupedConfig:
    """Tiles of the grouped path: ``block`` sorted pairs x ``bn`` (gate_up) / ``bn_down`` weight
    rows x ``bk`` codes along K per step; ``w_left``: the weight is the MMA's left operand;
    ``decode``: one of ``DECODES``; ``prefetch_scales``: load step t+1's scale bytes during step t
    (one byte a thread, too narrow for the compiler's asynchronous-copy pipeline, so otherwise
    each step waits a global-load latency for them); ``pair_rows``: gate_up decodes gate and up
    rows in one ``2 bn``-row tile, so each K step has one decode, one barrier and one wider MMA
    instead of two of each (interleaved rows with the weight as the right operand, stacked
    rows, gate then up, as the left one); ``down_warps``:
    warps of the down launch when they differ from gate_up's ``num_warps``."""

    block: int
    bn: int = 64
    bn_down: int = 64
    bk: int = 64
    w_left: bool = False
    num_warps: int = 4
    num_stages: int = 3
    decode: str = "f32"
    prefetch_scales: bool = False
    pair_rows: bool = False
    down_warps: int | None = None

    def __post_init__(self) -> None:
        for name in ("block", "bn", "bn_down", "bk"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name}={value} must be a power of two >= 16")
        if self.bk < 64:
            raise ValueError("bk must be at least 64 (two MX blocks)")
        if self.decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {self.decode!r}")


# From this many pairs, fma8 experts run the bf16x2 decode with prefetched scales and gate and
# up paired in one tile. H100, run 3 (docs/perf-log/kernels-mxfp4.md): 389 against 398 us at 256 pairs,
# 415 against 570 at 1024, 814 against 1144 at 4096; run 5, with the weight on the left: 285
# against 324 us at 64 pairs, 312 against 346 at 128; 33-63 pairs not measured.
PAIRED_MIN_PAIRS = 64


def grouped_config(pairs: int, experts: int, layout: str = "fma8") -> GroupedConfig:
    """``block``: a power of two (16 to 64) over the expected busiest expert's rows, mean + 2
    standard deviations of a binomial count, so one tile per expert is the common case.

    H100 sweep (docs/perf-log/kernels-mxfp4.md): 64-row tiles beat 32 at 1024 pairs (584 against 619 us);
    at 256 pairs 16-row tiles (the earlier kernel at BK 64, 442 us) beat 32 (475 us), hence 2
    deviations, not 3. Four warps: eight were slower at 64 rows (748 against 584 us) though
    ptxas spills a few bytes at four. From ``PAIRED_MIN_PAIRS`` on fma8 codes: ``decode``
    "bf16x2", ``prefetch_scales`` and ``pair_rows``, and below 64 rows a tile ``w_left``: with
    fewer than 64 activation rows as the MMA's M the compiler falls back to Ampere-style MMAs,
    while the weight as the left operand keeps Hopper's warpgroup MMA (H100, run 4: 256 pairs
    369 against 392 us, 512 pairs 401 against 460; at 1024 pairs, 64-row tiles, it lost 496
    against 412).
    """
    mean = pairs / max(1, experts)
    busiest = mean + 2.0 * (mean * (1.0 - 1.0 / max(1, experts))) ** 0.5
    block = 16
    while block < busiest and block < 64:
        block *= 2
    if layout in FMA8_LAYOUTS and pairs >= PAIRED_MIN_PAIRS:
        # H100, session 4 (CUDA-graph replays of one layer, two runs each; docs/perf-log/engine-gpu.md "Decode
        # step at 64 and 256"): at 1024 pairs 128-row down tiles, 326.7-330.0 against 340.5-345.7 us; at
        # 256 pairs 32-row gate_up tiles, 272.2-274.0 against 290.9-294.2. Other counts not measured.
        bn = 32 if block == 16 and pairs >= 256 else 64
        bn_down = 128 if block == 64 and pairs >= 1024 else 64
        return GroupedConfig(block=block, bn=bn, bn_down=bn_down, decode="bf16x2", prefetch_scales=True,
                             pair_rows=True, w_left=block < 64)
    return GroupedConfig(block=block)


@triton.jit
def _gate_up_kernel(
    x_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr,
    gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr,
    I, H, stride_x, KP_BLOCKS, TOPK, alpha, limit,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, TAIL: tl.constexpr, W_LEFT: tl.constexpr,
    HAS_BIAS: tl.constexpr, SWIZZLED: tl.constexpr, BF16X2: tl.constexpr, PREFETCH: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    busy, rows, pair, m_ok = tile_rows(order_ptr, tile_start_ptr, tile_end_ptr, pid_m, BM)
    if busy:
        e = tl.load(tile_expert_ptr + pid_m).to(tl.int64)
        offs_n = pid_n * BN + tl.arange(0, BN)
        n_ok = offs_n < I
        x_rows = x_ptr + (pair // TOPK).to(tl.int64) * stride_x
        gq, gs, r8 = row_starts(gq_ptr, gs_ptr, e * I + offs_n, KP_BLOCKS, SWIZZLED)
        lq, ls, r8 = row_starts(lq_ptr, ls_ptr, e * I + offs_n, KP_BLOCKS, SWIZZLED)
        if W_LEFT:
            acc_g = tl.zeros((BN, BM), tl.float32)
            acc_l = tl.zeros((BN, BM), tl.float32)
        else:
            acc_g = tl.zeros((BM, BN), tl.float32)
            acc_l = tl.zeros((BM, BN), tl.float32)
        full = H // BK
        sg = step_scales(gs, r8, n_ok, 0, KP_BLOCKS, BK, SWIZZLED)
        sl = step_scales(ls, r8, n_ok, 0, KP_BLOCKS, BK, SWIZZLED)
        for t in range(0, full):
            if PREFETCH:
                sg_t, sl_t = sg, sl
                sg = step_scales(gs, r8, n_ok, t + 1, KP_BLOCKS, BK, SWIZZLED)
                sl = step_scales(ls, r8, n_ok, t + 1, KP_BLOCKS, BK, SWIZZLED)
            else:
                sg_t = step_scales(gs, r8, n_ok, t, KP_BLOCKS, BK, SWIZZLED)
                sl_t = step_scales(ls, r8, n_ok, t, KP_BLOCKS, BK, SWIZZLED)
            xt = step_acts(x_rows, m_ok, t, H, BK, True, INTERPRET)
            wg = step_weight(gq, r8, sg_t, n_ok, t, KP_BLOCKS, BN, BK, True, SWIZZLED, BF16X2, INTERPRET)
            acc_g = tile_mma(acc_g, wg, xt, W_LEFT)
            wl = step_weight(lq, r8, sl_t, n_ok, t, KP_BLOCKS, BN, BK, True, SWIZZLED, BF16X2, INTERPRET)
            acc_l = tile_mma(acc_l, wl, xt, W_LEFT)
        if TAIL:
            xt = step_acts(x_rows, m_ok, full, H, BK, False, INTERPRET)
            sg_t = step_scales(gs, r8, n_ok, full, KP_BLOCKS, BK, SWIZZLED)
            sl_t = step_scales(ls, r8, n_ok, full, KP_BLOCKS, BK, SWIZZLED)
            wg = step_weight(gq, r8, sg_t, n_ok, full, KP_BLOCKS, BN, BK, False, SWIZZLED, BF16X2, INTERPRET)
            acc_g = tile_mma(acc_g, wg, xt, W_LEFT)
            wl = step_weight(lq, r8, sl_t, n_ok, full, KP_BLOCKS, BN, BK, False, SWIZZLED, BF16X2, INTERPRET)
            acc_l = tile_mma(acc_l, wl, xt, W_LEFT)
        swiglu_rows_store(acc_g, acc_l, gb_ptr, lb_ptr, act_ptr, e, I, offs_n, n_ok, rows, m_ok, alpha, limit,
                          W_LEFT, HAS_BIAS, INTERPRET)


@triton.jit
def _down_kernel(
    act_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, wts_ptr,
    dq_ptr, ds_ptr, db_ptr, out_ptr,
    I, H, KP_BLOCKS,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, TAIL: tl.constexpr, W_LEFT: tl.constexpr,
    HAS_BIAS: tl.constexpr, SWIZZLED: tl.constexpr, BF16X2: tl.constexpr, PREFETCH: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    busy, rows, pair, m_ok = tile_rows(order_ptr, tile_start_ptr, tile_end_ptr, pid_m, BM)
    if busy:
        e = tl.load(tile_expert_ptr + pid_m).to(tl.int64)
        offs_n = pid_n * BN + tl.arange(0, BN)
        n_ok = offs_n < H
        a_rows = act_ptr + rows.to(tl.int64) * I  # gate_up wrote the activations in sorted-row order
        dq, ds, r8 = row_starts(dq_ptr, ds_ptr, e * H + offs_n, KP_BLOCKS, SWIZZLED)
        if W_LEFT:
            acc = tl.zeros((BN, BM), tl.float32)
        else:
            acc = tl.zeros((BM, BN), tl.float32)
        acc = weight_k_loop(acc, dq, ds, r8, n_ok, a_rows, m_ok, I, KP_BLOCKS, BN, BK, TAIL, W_LEFT, SWIZZLED, BF16X2,
                            PREFETCH, INTERPRET)
        if HAS_BIAS:
            acc += acc_cols(tl.load(db_ptr + e * H + offs_n, mask=n_ok, other=0.0), W_LEFT)
        wt = tl.load(wts_ptr + pair, mask=m_ok, other=0.0)
        if W_LEFT:
            acc *= wt[None, :]
            tl.store(out_ptr + pair[None, :].to(tl.int64) * H + offs_n[:, None], acc,
                     mask=n_ok[:, None] & m_ok[None, :])
        else:
            acc *= wt[:, None]
            tl.store(out_ptr + pair[:, None].to(tl.int64) * H + offs_n[None, :], acc,
                     mask=m_ok[:, None] & n_ok[None, :])


def moe_grouped(x: torch.Tensor, groups: ExpertGroups, wts: torch.Tensor, w: MoEWeights, k: int, alpha: float,
                limit: float, cfg: GroupedConfig) -> torch.Tensor:
    """Both launches over ``groups`` (cut with ``cfg.block`` rows a tile); -> ``[T, H]`` in x's dtype.

    ``x`` ``[T, H]`` contiguous, ``wts`` fp32 ``[T, k]``.
    """
    if groups.block != cfg.block:
        raise ValueError(f"groups were cut into {groups.block}-row tiles, the config wants {cfg.block}")
    i_dim, h_dim = w.intermediate, w.hidden
    act = torch.empty((x.shape[0] * k, i_dim), dtype=torch.bfloat16, device=x.device)
    tiles = (groups.order, groups.tile_expert, groups.tile_start, groups.tile_end)
    bias = lambda b: act if b is None else b  # noqa: E731
    if cfg.decode == "bf16x2" and w.layout not in FMA8_LAYOUTS:
        raise ValueError(f"decode 'bf16x2' reads fma8 codes, the experts are {w.layout!r}")
    common = dict(BM=cfg.block, BK=cfg.bk, W_LEFT=cfg.w_left, HAS_BIAS=w.has_bias,
                  BF16X2=cfg.decode == "bf16x2", PREFETCH=cfg.prefetch_scales, INTERPRET=is_interpreter(),
                  num_stages=cfg.num_stages)
    gate_up = gate_up_paired_kernel if cfg.pair_rows else _gate_up_kernel
    gate_up[(triton.cdiv(i_dim, cfg.bn), groups.num_tiles)](
        x, *tiles, code_pointer(w.glu), w.glu.scales, code_pointer(w.linear), w.linear.scales,
        bias(w.glu_bias), bias(w.linear_bias), act,
        i_dim, h_dim, x.stride(0), w.glu.k_padded // 32, k, alpha, limit,
        BN=cfg.bn, TAIL=h_dim % cfg.bk != 0, num_warps=cfg.num_warps, SWIZZLED=layout_code(w.glu), **common,
    )
    out = torch.empty((act.shape[0], h_dim), dtype=torch.float32, device=x.device)
    _down_kernel[(triton.cdiv(h_dim, cfg.bn_down), groups.num_tiles)](
        act, *tiles, wts, code_pointer(w.down), w.down.scales, bias(w.down_bias), out,
        i_dim, h_dim, w.down.k_padded // 32,
        BN=cfg.bn_down, TAIL=i_dim % cfg.bk != 0, num_warps=cfg.down_warps or cfg.num_warps,
        SWIZZLED=layout_code(w.down), **common,
    )
    return sum_slots(out, k, x.dtype)
