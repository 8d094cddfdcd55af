"""The prefill MoE on bf16-dequantized experts through cuBLAS/CUTLASS: gather, GEMM, SwiGLU, GEMM, sum.

Sorted pairs (``group_by_expert``) are gathered into expert-contiguous rows and multiplied
by each expert's bf16 weights; two small kernels do SwiGLU (biases and clamps) and the
routing-weighted sum over each token's k slots (down bias included, fixed slot order, no
atomics: deterministic). The GEMMs return bf16, so gate/up pre-activations and each
expert's down output are rounded to bf16 before SwiGLU and the weighted sum (as the bf16
model does; the reference keeps them in fp32). Two ways to lay the work out:

* ``"split"``: gate and up dequantized to two ``[E, I, H]`` tensors, three grouped GEMMs
  (``torch._grouped_mm``, CUTLASS on Hopper). The first version; kept as the peer.
* ``"fused"``: gate and up dequantized into the halves of one ``[E, 2I, H]`` buffer, so
  one grouped GEMM of N = 2I does both (one launch, one pass over the gathered rows).
Measured and dropped (H100, docs/perf-log/engine-gpu.md "Prefill step"): one expert at a time through
a reused ``[2I, H]`` buffer (33 MB, L2-sized) with ``torch.mm`` per expert. Its kernels took
as long as the grouped GEMMs (the dequantization gained nothing from L2), but it needs the
group sizes on the host and launched ~200 kernels a layer: the eager step took 2.1x longer.

Both group on the device into fixed-size buffers: graph-capturable.
Weights stay MXFP4 in memory; only transient bf16 copies exist during the call.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._swiglu import swiglu
from quartet.kernels.mxfp4._tile import cast_out
from quartet.kernels.mxfp4.dequant import DequantTiles, dequantize_triton
from quartet.kernels.mxfp4.moe_layout import ExpertGroups, MoEWeights

CUBLAS_LAYOUTS = ("split", "fused")
_BN = 1024  # columns a program of the two row kernels


@triton.jit
def _swiglu_rows_kernel(g_ptr, l_ptr, expert_ptr, gb_ptr, lb_ptr, act_ptr, I, stride_in, alpha, limit,
                        BN: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """Row ``r`` of ``act = swiglu(g + bg[e], l + bl[e])``; g and l rows ``stride_in`` apart."""
    r = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BN + tl.arange(0, BN)
    ok = offs < I
    g = tl.load(g_ptr + r * stride_in + offs, mask=ok, other=0.0).to(tl.float32)
    lin = tl.load(l_ptr + r * stride_in + offs, mask=ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        e = tl.load(expert_ptr + r).to(tl.int64)
        g += tl.load(gb_ptr + e * I + offs, mask=ok, other=0.0)
        lin += tl.load(lb_ptr + e * I + offs, mask=ok, other=0.0)
    act = cast_out(swiglu(g, lin, alpha, limit), act_ptr.dtype.element_ty, INTERPRET)
    tl.store(act_ptr + r * I + offs, act, mask=ok)


@triton.jit
def _combine_kernel(y_ptr, row_of_pair_ptr, ids_ptr, wts_ptr, db_ptr, out_ptr, H,
                    TOPK: tl.constexpr, BN: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """``out[t] = sum_j w[t, j] * (y[row of pair (t, j)] + bias[expert])``, slots in a fixed order."""
    t = tl.program_id(0)
    offs = tl.program_id(1) * BN + tl.arange(0, BN)
    ok = offs < H
    acc = tl.zeros((BN,), tl.float32)
    for j in tl.static_range(TOPK):
        p = t * TOPK + j
        r = tl.load(row_of_pair_ptr + p).to(tl.int64)
        v = tl.load(y_ptr + r * H + offs, mask=ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            v += tl.load(db_ptr + tl.load(ids_ptr + p).to(tl.int64) * H + offs, mask=ok, other=0.0)
        acc += tl.load(wts_ptr + p) * v
    tl.store(out_ptr + t.to(tl.int64) * H + offs, cast_out(acc, out_ptr.dtype.element_ty, INTERPRET), mask=ok)


def moe_dense_cublas(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, groups: ExpertGroups,
                     alpha: float, limit: float, layout: str = "fused",
                     tiles: DequantTiles | None = None) -> torch.Tensor:
    """``[T, H]`` in x's dtype for tokens ``x`` routed by ``ids32``/``wts`` (``[T, k]``); see the module doc."""
    if layout not in CUBLAS_LAYOUTS:
        raise ValueError(f"layout must be one of {CUBLAS_LAYOUTS}, got {layout!r}")
    t, k = ids32.shape
    i_dim, h_dim = w.intermediate, w.hidden
    order = groups.order.long()
    rows = x.index_select(0, order // k).to(torch.bfloat16)
    ends = groups.expert_end
    if layout == "split":
        glu, lin = dequantize_triton(w.glu, tiles=tiles), dequantize_triton(w.linear, tiles=tiles)
        g = torch._grouped_mm(rows, glu.transpose(1, 2), offs=ends)
        up = torch._grouped_mm(rows, lin.transpose(1, 2), offs=ends)
        del glu, lin, rows
        act = _swiglu(g, up, i_dim, ids32, order, w, alpha, limit)
        del g, up
        y = torch._grouped_mm(act, dequantize_triton(w.down, tiles=tiles).transpose(1, 2), offs=ends)
    else:
        gate_up = torch.empty((w.num_experts, 2 * i_dim, h_dim), dtype=torch.bfloat16, device=x.device)
        dequantize_triton(w.glu, out=gate_up[:, :i_dim], tiles=tiles)
        dequantize_triton(w.linear, out=gate_up[:, i_dim:], tiles=tiles)
        gu = torch._grouped_mm(rows, gate_up.transpose(1, 2), offs=ends)
        del gate_up, rows
        act = _swiglu(gu, gu[:, i_dim:], 2 * i_dim, ids32, order, w, alpha, limit)
        del gu
        y = torch._grouped_mm(act, dequantize_triton(w.down, tiles=tiles).transpose(1, 2), offs=ends)
    row_of_pair = torch.empty_like(groups.order).scatter_(
        0, order, torch.arange(t * k, dtype=torch.int32, device=x.device))
    out = torch.empty((t, h_dim), dtype=x.dtype, device=x.device)
    _combine_kernel[(t, triton.cdiv(h_dim, _BN))](
        y, row_of_pair, ids32, wts, _or(w.down_bias, y), out, h_dim,
        TOPK=k, BN=_BN, HAS_BIAS=w.has_bias, INTERPRET=is_interpreter(), num_warps=4,
    )
    return out


def _or(bias: torch.Tensor | None, stand_in: torch.Tensor) -> torch.Tensor:
    """A kernel argument for an absent bias (never read: ``HAS_BIAS`` is off)."""
    return stand_in if bias is None else bias


def _swiglu(g: torch.Tensor, up: torch.Tensor, stride_in: int, ids32: torch.Tensor, order: torch.Tensor,
            w: MoEWeights, alpha: float, limit: float) -> torch.Tensor:
    pairs, i_dim = g.shape[0], w.intermediate
    act = torch.empty((pairs, i_dim), dtype=torch.bfloat16, device=g.device)
    expert_of_row = ids32.reshape(-1).index_select(0, order)
    _swiglu_rows_kernel[(pairs, triton.cdiv(i_dim, _BN))](
        g, up, expert_of_row, _or(w.glu_bias, act), _or(w.linear_bias, act), act, i_dim, stride_in, alpha, limit,
        BN=_BN, HAS_BIAS=w.has_bias, INTERPRET=is_interpreter(), num_warps=4,
    )
    return act
