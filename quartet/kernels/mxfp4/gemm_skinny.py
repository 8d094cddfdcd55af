"""Decode-batch GEMM (about 17 to a few hundred rows): ``x[M, K] @ W[N, K]^T`` on fma8 weights.

Why a kernel of its own: at decode batches (64-256 rows) the prefill paths both lose. The
dequantize + cuBLAS path writes and re-reads the weight as bf16 (4 of every 4.25 bytes it
moves are that copy: about 1 ms a step for gpt-oss's 201088-row unembedding), and the
``gemm`` ``dequant_dot`` tile decodes in fp32 (23 integer operations, 16 multiplies and 4
conversions per 8 weights) with 128-wide K steps that ptxas spills. Here each weight is read
once as 4.25 bits and decoded in registers two per instruction (``_bf16x2.py``), over the
short unmasked K steps that worked for the grouped MoE (``moe_grouped.py``), whose per-step
helpers this reuses (``_grouped_tile.py``): the scale bytes of step t+1 load during step t,
a peeled masked step covers a K tail.

Programs that share a weight tile are adjacent (the M tiles of one N tile run back to back),
so at ``bm`` < M the second read of a tile is an L2 hit. The attention projections have too
few weight tiles to fill the chip (qkv: 40 of 128 rows, o: 23), so K is split until about
two programs a multiprocessor run, finished in the same launch (``_epilogue.store_or_reduce``:
the last split to arrive sums the partials). No host sync, sizes fixed by the shapes:
graph-safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._env import can_launch, device_sms, is_interpreter
from quartet.kernels.mxfp4._epilogue import store_or_reduce
from quartet.kernels.mxfp4._grouped_tile import step_acts, step_scales, step_weight, tile_mma
from quartet.kernels.mxfp4._launch import check_tiles, splitk_buffers
from quartet.kernels.mxfp4._matmul import check_operands, code_pointer, split_plan
from quartet.kernels.mxfp4._tile import row_starts
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.layout import FMA8_LAYOUTS, layout_code

__all__ = ["SkinnyConfig", "mxfp4_gemm_skinny", "skinny_config", "split_for"]


@dataclass(frozen=True, slots=True)
class SkinnyConfig:
    """``bm`` activation rows x ``bn`` weight rows a program, ``bk`` along K a step; ``w_left``:
    the decoded tile is the MMA's left operand (fed from registers) rather than the right one
    (through shared memory); ``decode``: "bf16x2" (two weights an instruction) or "f32";
    ``split_k``: programs along K."""

    bm: int = 128
    bn: int = 128
    bk: int = 64
    w_left: bool = False
    num_warps: int = 8
    num_stages: int = 3
    decode: str = "bf16x2"
    split_k: int = 1

    def __post_init__(self) -> None:
        check_tiles(self, "two MX blocks")
        if self.decode not in ("bf16x2", "f32"):
            raise ValueError(f"decode must be 'bf16x2' or 'f32', got {self.decode!r}")
        if self.split_k < 1:
            raise ValueError("split_k must be >= 1")


def skinny_config(m: int, n: int, k_padded: int, sms: int) -> SkinnyConfig:
    """Tall weights (at least four 128 x 128 tiles a multiprocessor: the unembedding): 128
    activation rows a tile (all of M up to 128, so each weight is decoded once), 128 weight
    rows, 8 warps, and from 128 rows the weight as the MMA's left operand. Short ones (the
    attention projections): at most 64 activation rows and 64 weight rows, 4 warps, so the
    grid has programs enough; ``split_k`` from ``split_for``.

    H100, docs/perf-log/kernels-mxfp4.md "Dense linears at M = 64-256": unembedding at M = 256 598 us
    with the weight on the left against 647 on the right (at M = 64, 273 against 236: right);
    qkv at M = 64 16.1 us with 64-row weight tiles against 21.6 with 128; qkv and o at M = 128
    22.0 and 19.5 us with 64-row activation tiles against 28.4 and 30.5 with 128.
    """
    tall = triton.cdiv(max(1, n), 128) * triton.cdiv(max(1, m), 128) >= 4 * sms
    bm = 16
    while bm < m and bm < (128 if tall else 64):
        bm *= 2
    bn = 128 if tall else 64
    return SkinnyConfig(bm=bm, bn=bn, bk=64, w_left=bm >= 128, num_warps=8 if bm >= 64 and bn >= 128 else 4,
                        split_k=split_for(m, n, k_padded, sms, bm, bn, 64))


def split_for(m: int, n: int, k_padded: int, sms: int, bm: int, bn: int, bk: int) -> int:
    """K splits that bring ``[bm, bn]`` tiles up to two programs a multiprocessor (at most 8)."""
    tiles = triton.cdiv(max(1, n), bn) * triton.cdiv(max(1, m), bm)
    k_tiles = triton.cdiv(max(1, k_padded), bk)
    split = 1
    while tiles * split < 2 * sms and split * 2 <= min(8, k_tiles // 4):
        split *= 2
    return split


@triton.jit
def _skinny_kernel(
    x_ptr, wq_ptr, ws_ptr, b_ptr, y_ptr, part_ptr, cnt_ptr,
    M, N, K, stride_xm, stride_ym, KP_BLOCKS, TILES_PER_SPLIT, N_SPLIT,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, TAIL: tl.constexpr, W_LEFT: tl.constexpr,
    SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, BF16X2: tl.constexpr, INTERPRET: tl.constexpr,
    SWIZZLED: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_s = tl.program_id(1)
    num_m = tl.cdiv(M, BM)
    pid_n = pid // num_m
    pid_m = pid % num_m
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < N
    offs_m = pid_m * BM + tl.arange(0, BM)
    m_ok = offs_m < M
    x_rows = x_ptr + offs_m.to(tl.int64) * stride_xm
    q_rows, s_rows, r8 = row_starts(wq_ptr, ws_ptr, offs_n, KP_BLOCKS, SWIZZLED)
    if W_LEFT:
        acc = tl.zeros((BN, BM), tl.float32)
    else:
        acc = tl.zeros((BM, BN), tl.float32)
    full = K // BK  # steps inside K; step ``full`` (if TAIL) is the masked one
    t0 = pid_s * TILES_PER_SPLIT
    t1 = t0 + TILES_PER_SPLIT
    sc = step_scales(s_rows, r8, n_ok, t0, KP_BLOCKS, BK, SWIZZLED)
    for t in range(t0, tl.minimum(t1, full)):
        sc_t = sc
        sc = step_scales(s_rows, r8, n_ok, t + 1, KP_BLOCKS, BK, SWIZZLED)
        xt = step_acts(x_rows, m_ok, t, K, BK, True, INTERPRET)
        w = step_weight(q_rows, r8, sc_t, n_ok, t, KP_BLOCKS, BN, BK, True, SWIZZLED, BF16X2, INTERPRET)
        acc = tile_mma(acc, w, xt, W_LEFT)
    if TAIL:
        if t1 > full:  # this split owns the tail step, and its scales are the last prefetched
            xt = step_acts(x_rows, m_ok, full, K, BK, False, INTERPRET)
            w = step_weight(q_rows, r8, sc, n_ok, full, KP_BLOCKS, BN, BK, False, SWIZZLED, BF16X2, INTERPRET)
            acc = tile_mma(acc, w, xt, W_LEFT)
    if not W_LEFT:
        acc = tl.trans(acc)  # the epilogue stores [BN, BM]; once per program
    store_or_reduce(acc, y_ptr, b_ptr, part_ptr, cnt_ptr, offs_n, n_ok, offs_m, m_ok, M, N, stride_ym,
                    pid, pid_s, N_SPLIT, SPLIT, HAS_BIAS, INTERPRET)


def mxfp4_gemm_skinny(
    x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None = None, *, config: SkinnyConfig | None = None,
) -> torch.Tensor:
    """``x[..., K]`` times fma8 ``w[N, K]``: ``[..., N]`` in x's dtype. Any row count works;
    the tiles suit decode batches (``skinny_config``)."""
    check_operands(x, w, bias)
    if w.layout not in FMA8_LAYOUTS:
        raise ValueError(f"mxfp4_gemm_skinny reads fma8 codes (quartet.kernels.to_kernel_layout), got {w.layout!r}")
    if not can_launch(x):
        raise RuntimeError("mxfp4_gemm_skinny needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    x2 = x.reshape(-1, w.k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m, n = x2.shape[0], w.n
    y = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    if m == 0 or n == 0:
        return y.reshape(*x.shape[:-1], n)
    cfg = config or skinny_config(m, n, w.k_padded, device_sms(x))
    split, per_split = split_plan(w.k_padded, cfg.bk, cfg.split_k)
    num_tiles = triton.cdiv(n, cfg.bn) * triton.cdiv(m, cfg.bm)
    part, cnt = splitk_buffers(y, split, num_tiles)
    _skinny_kernel[(num_tiles, split)](
        x2, code_pointer(w), w.scales, bias if bias is not None else y, y, part, cnt,
        m, n, w.k, x2.stride(0), y.stride(0), w.k_padded // 32, per_split, split,
        BM=cfg.bm, BN=cfg.bn, BK=cfg.bk, TAIL=w.k % cfg.bk != 0, W_LEFT=cfg.w_left, SPLIT=split > 1,
        HAS_BIAS=bias is not None,
        BF16X2=cfg.decode == "bf16x2", INTERPRET=is_interpreter(), SWIZZLED=layout_code(w),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return y.reshape(*x.shape[:-1], n)
