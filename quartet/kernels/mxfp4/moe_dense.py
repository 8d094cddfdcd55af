"""gpt-oss MoE for many tokens: dequantize the experts to bf16 once per call, then grouped bf16 GEMMs.

From a few thousand (token, expert) pairs on, the layer is compute-bound (2 x pairs x 3IH
flops on 3IH weights per expert). Decoding an MXFP4 tile in the warps that issue the
tensor-core ops then costs more than writing the experts out once in bf16 (0.53 B read
and 2 B written per weight, ~0.5 ms for a gpt-oss-20b layer) and running a plain bf16
tile loop: the same trade ``gemm.py``'s ``dequant_cublas`` won for dense prefill. Two
ways to multiply the sorted pairs by their experts:

* ``backend="triton"``: grouped Triton GEMMs over ``group_by_expert``'s tiles. SwiGLU runs
  on gate_up's fp32 accumulators, the bias and routing weight in down's epilogue, which
  writes each pair's fp32 row; a sum over the k slots gives y (no atomics: deterministic).
* ``backend="cublas*"``: cuBLAS/CUTLASS GEMMs on the gathered rows, SwiGLU and the
  weighted sum in two small kernels (``moe_dense_cublas.py``, which says how its three
  layouts differ).

The Triton backend groups on the device (no host sync) into fixed-size buffers:
graph-capturable. Peak workspace: glu and linear in bf16 (2 E I H) during gate_up, then
down (E H I) alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._epilogue import sum_slots
from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._swiglu import swiglu
from quartet.kernels.mxfp4._tile import cast_out
from quartet.kernels.mxfp4.dequant import dequantize_triton
from quartet.kernels.mxfp4.moe_dense_cublas import moe_dense_cublas
from quartet.kernels.mxfp4.moe_layout import ExpertGroups, MoEWeights, group_by_expert

DENSE_BACKENDS = ("triton", "cublas", "cublas_split")


@dataclass(frozen=True, slots=True)
class DenseConfig:
    """Tiles of the Triton backend: ``block`` sorted pairs x ``bn_*`` weight rows x ``bk``."""

    block: int = 128
    bn_gate_up: int = 64  # two accumulators (gate and up), so 2 x 64 output columns
    bn_down: int = 128
    bk: int = 64
    group: int = 8
    num_warps: int = 8
    num_stages: int = 3

    def __post_init__(self) -> None:
        for name in ("block", "bn_gate_up", "bn_down", "bk"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name}={value} must be a power of two >= 16")


@triton.jit
def _band(pid, num_n, num_m, GROUP: tl.constexpr):
    """(weight tile, row tile) of program ``pid``: ``GROUP`` weight tiles walk every row tile
    together, so an expert's weight tile comes from DRAM once and its other row tiles hit L2."""
    first_n = (pid // (GROUP * num_m)) * GROUP
    size = tl.minimum(num_n - first_n, GROUP)
    return first_n + pid % size, (pid % (GROUP * num_m)) // size


@triton.jit
def _dot(a, b, acc, INTERPRET: tl.constexpr):
    if INTERPRET:  # the interpreter's numpy has no bf16 arithmetic; products are exact in fp32 anyway
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    return tl.dot(a, b, acc)


@triton.jit
def _load_k(row_ptrs, kk, row_ok, K, EVEN_K: tl.constexpr):
    """``[rows, BK]`` tile at columns ``kk``; with ``EVEN_K`` no column mask, so loads vectorize."""
    if EVEN_K:
        tile = tl.load(row_ptrs[:, None] + kk[None, :], mask=row_ok[:, None], other=0.0)
    else:
        tile = tl.load(row_ptrs[:, None] + kk[None, :], mask=row_ok[:, None] & (kk < K)[None, :], other=0.0)
    return tile


@triton.jit
def _tile(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, pid_m, BM: tl.constexpr):
    start = tl.load(tile_start_ptr + pid_m)
    end = tl.load(tile_end_ptr + pid_m)
    rows = start + tl.arange(0, BM)
    ok = rows < end
    pair = tl.load(order_ptr + rows, mask=ok, other=0)
    return start < end, rows, pair, ok, tl.load(tile_expert_ptr + pid_m).to(tl.int64)


@triton.jit
def _gate_up_kernel(
    x_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, g_ptr, l_ptr, gb_ptr, lb_ptr, act_ptr,
    I, H, stride_x, TOPK, num_tiles, alpha, limit,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n, pid_m = _band(tl.program_id(0), tl.cdiv(I, BN), num_tiles, GROUP)
    busy, rows, pair, m_ok, e = _tile(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, pid_m, BM)
    if busy:
        offs_n = pid_n * BN + tl.arange(0, BN)
        n_ok = offs_n < I
        x_rows = x_ptr + (pair // TOPK).to(tl.int64) * stride_x
        w_rows = (e * I + offs_n) * H
        acc_g = tl.zeros((BM, BN), tl.float32)
        acc_l = tl.zeros((BM, BN), tl.float32)
        for k0 in range(0, H, BK):
            kk = k0 + tl.arange(0, BK)
            xt = _load_k(x_rows, kk, m_ok, H, EVEN_K)
            gt = _load_k(g_ptr + w_rows, kk, n_ok, H, EVEN_K)
            lt = _load_k(l_ptr + w_rows, kk, n_ok, H, EVEN_K)
            acc_g = _dot(xt, tl.trans(gt), acc_g, INTERPRET)
            acc_l = _dot(xt, tl.trans(lt), acc_l, INTERPRET)
        if HAS_BIAS:
            acc_g += tl.load(gb_ptr + e * I + offs_n, mask=n_ok, other=0.0)[None, :]
            acc_l += tl.load(lb_ptr + e * I + offs_n, mask=n_ok, other=0.0)[None, :]
        act = cast_out(swiglu(acc_g, acc_l, alpha, limit), act_ptr.dtype.element_ty, INTERPRET)
        tl.store(act_ptr + rows[:, None].to(tl.int64) * I + offs_n[None, :], act, mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _down_kernel(
    act_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, wts_ptr, d_ptr, db_ptr, out_ptr,
    I, H, num_tiles,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n, pid_m = _band(tl.program_id(0), tl.cdiv(H, BN), num_tiles, GROUP)
    busy, rows, pair, m_ok, e = _tile(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, pid_m, BM)
    if busy:
        offs_n = pid_n * BN + tl.arange(0, BN)
        n_ok = offs_n < H
        a_rows = act_ptr + rows.to(tl.int64) * I
        w_rows = (e * H + offs_n) * I
        acc = tl.zeros((BM, BN), tl.float32)
        for k0 in range(0, I, BK):
            kk = k0 + tl.arange(0, BK)
            at = _load_k(a_rows, kk, m_ok, I, EVEN_K)
            wt = _load_k(d_ptr + w_rows, kk, n_ok, I, EVEN_K)
            acc = _dot(at, tl.trans(wt), acc, INTERPRET)
        if HAS_BIAS:
            acc += tl.load(db_ptr + e * H + offs_n, mask=n_ok, other=0.0)[None, :]
        acc *= tl.load(wts_ptr + pair, mask=m_ok, other=0.0)[:, None]
        tl.store(out_ptr + pair[:, None].to(tl.int64) * H + offs_n[None, :], acc, mask=m_ok[:, None] & n_ok[None, :])


def moe_dense(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, alpha: float, limit: float,
              backend: str = "triton", config: DenseConfig | None = None) -> torch.Tensor:
    """The MoE on bf16-dequantized experts. ``ids32`` int32 ``[T, k]``, ``wts`` fp32 ``[T, k]``; -> ``[T, H]``.

    ``backend``: "triton" (this file's grouped GEMMs), or "cublas" / "cublas_split"
    (``moe_dense_cublas.py``'s "fused" and "split" layouts).
    """
    if backend not in DENSE_BACKENDS:
        raise ValueError(f"backend must be one of {DENSE_BACKENDS}, got {backend!r}")
    cfg = config or DenseConfig()
    groups = group_by_expert(ids32, w.num_experts, cfg.block)
    if backend == "triton":
        return _triton(x, ids32, wts, w, groups, alpha, limit, cfg)
    layout = {"cublas": "fused", "cublas_split": "split"}[backend]
    return moe_dense_cublas(x, ids32, wts, w, groups, alpha, limit, layout)


def _triton(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, groups: ExpertGroups,
            alpha: float, limit: float, cfg: DenseConfig) -> torch.Tensor:
    t, k = ids32.shape
    glu, lin = dequantize_triton(w.glu), dequantize_triton(w.linear)
    i_dim, h_dim, interp = w.intermediate, w.hidden, is_interpreter()
    act = torch.empty((t * k, i_dim), dtype=torch.bfloat16, device=x.device)
    bias = lambda b: act if b is None else b  # noqa: E731
    tiles = (groups.order, groups.tile_expert, groups.tile_start, groups.tile_end)
    launch = dict(GROUP=cfg.group, HAS_BIAS=w.has_bias, INTERPRET=interp, num_warps=cfg.num_warps,
                  num_stages=cfg.num_stages)
    _gate_up_kernel[(triton.cdiv(i_dim, cfg.bn_gate_up) * groups.num_tiles,)](
        x, *tiles, glu, lin, bias(w.glu_bias), bias(w.linear_bias), act,
        i_dim, h_dim, x.stride(0), k, groups.num_tiles, alpha, limit,
        BM=cfg.block, BN=cfg.bn_gate_up, BK=cfg.bk, EVEN_K=h_dim % cfg.bk == 0, **launch,
    )
    del glu, lin  # the down weights reuse this memory
    down = dequantize_triton(w.down)
    out = torch.empty((t * k, h_dim), dtype=torch.float32, device=x.device)
    _down_kernel[(triton.cdiv(h_dim, cfg.bn_down) * groups.num_tiles,)](
        act, *tiles, wts, down, bias(w.down_bias), out, i_dim, h_dim, groups.num_tiles,
        BM=cfg.block, BN=cfg.bn_down, BK=cfg.bk, EVEN_K=i_dim % cfg.bk == 0, **launch,
    )
    return sum_slots(out, k, x.dtype)
