"""MoE decode on the tensor cores (``_dec2_mma.py``): the two launches of ``moe_decode.py`` with
two weights decoded an instruction and ``mma.sync`` as the multiply-add.

gate_up: a program takes one (token, expert) pair, ``BR`` rows and one K slice; its two row
tiles are the same rows of glu and linear, so one ``mma`` serves both and the clamped
SwiGLU needs no exchange. With one K slice it writes the bf16 activations itself, else
the last of a row group's slices sums the partials and finishes them (``_epilogue``).

down: the k experts of a token are more K slices (slice ``q`` is expert ``q // S`` over K
range ``q % S``), each partial times its routing weight, so the fix-up's fixed-order sum is
the weighted expert sum; its two tiles are ``BR`` consecutive rows each. Counters reset in
the kernel, no atomics on data, no host sync: deterministic and graph-safe.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._dec2_mma import pdl_wait, slice_sums
from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._epilogue import arrive, down_finish, gather_tile, release, swiglu_store
from quartet.kernels.mxfp4._fma import MmaConfig
from quartet.kernels.mxfp4._launch import splitk_counters, whole_blocks
from quartet.kernels.mxfp4._matmul import code_pointer
from quartet.kernels.mxfp4.layout import layout_code
from quartet.kernels.mxfp4.moe_layout import MoEWeights


@triton.jit
def _rows_of(accs, g, NW: tl.constexpr, RPT: tl.constexpr, SET: tl.constexpr):
    """(lo sum, hi sum, row in the tile) of row set ``SET`` of each thread."""
    return accs[2 * SET], accs[2 * SET + 1], g + 8 * NW * SET


@triton.jit
def _gate_up_set(lo, hi, rows, r0, p, e, pid_s, I, part_ptr, stride_split, gb_ptr, lb_ptr, act_ptr, alpha, limit,
                 N_SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    n = r0 + rows
    if N_SPLIT == 1:
        swiglu_store(lo, hi, gb_ptr, lb_ptr, act_ptr, e, p, I, n, n < I, alpha, limit, HAS_BIAS, INTERPRET)
    else:
        base = p * 2 * I + n  # workspace [slices, pairs, 2, I]
        tl.store(part_ptr + pid_s * stride_split + base, lo, mask=n < I)
        tl.store(part_ptr + pid_s * stride_split + base + I, hi, mask=n < I)


@triton.jit(do_not_specialize=["T"])
def _gate_up_mma_kernel(
    x_ptr, ids_ptr, gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr, part_ptr, cnt_ptr,
    I, H, T, stride_x, KP_BLOCKS, TOPK, alpha, limit,
    HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, N_SPLIT: tl.constexpr,
    NW: tl.constexpr, RPT: tl.constexpr, GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr,
    SPLIT_P2: tl.constexpr, SWIZZLED: tl.constexpr, PDL: tl.constexpr,
):
    BR: tl.constexpr = 8 * NW * RPT
    pid_s = tl.program_id(0)  # K slices fastest (``_dec2_gemv``)
    pid_r = tl.program_id(1)
    p = tl.program_id(2)
    after = pdl_wait(PDL)  # the expert ids and x come from kernels before
    e = tl.load(ids_ptr + after + p).to(tl.int64)
    x_row = x_ptr + after + (p // TOPK).to(tl.int64) * stride_x
    r0 = pid_r * BR
    first = (e * I + r0) * KP_BLOCKS  # the lo tile is glu's rows, the hi tile linear's same rows
    accs, g = slice_sums(gq_ptr + first * 4, lq_ptr + first * 4, gs_ptr + first, ls_ptr + first, x_row, I - r0,
                         I - r0, pid_s * GROUPS, H, KP_BLOCKS, NW, RPT, GROUPS, PF, HINT, SWIZZLED, INTERPRET)
    stride_split = tl.num_programs(2) * 2 * I
    for s in tl.static_range(RPT):
        lo, hi, rows = _rows_of(accs, g, NW, RPT, s)
        _gate_up_set(lo, hi, rows, r0, p, e, pid_s, I, part_ptr, stride_split, gb_ptr, lb_ptr, act_ptr, alpha, limit,
                     N_SPLIT, HAS_BIAS, INTERPRET)
    if N_SPLIT > 1:
        # The last of the row group's K slices finishes it, summing the slices in a fixed order.
        group = p * tl.num_programs(1) + pid_r
        if arrive(cnt_ptr, group, N_SPLIT):
            n = r0 + tl.arange(0, BR)
            base = p * 2 * I + n
            g_sum = gather_tile(part_ptr, base, n < I, stride_split, N_SPLIT, SPLIT_P2)
            l_sum = gather_tile(part_ptr, base + I, n < I, stride_split, N_SPLIT, SPLIT_P2)
            swiglu_store(g_sum, l_sum, gb_ptr, lb_ptr, act_ptr, e, p, I, n, n < I, alpha, limit, HAS_BIAS, INTERPRET)
            release(cnt_ptr, group)


@triton.jit(do_not_specialize=["T"])
def _down_mma_kernel(
    act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr, part_ptr, cnt_ptr,
    I, H, T, KP_BLOCKS, TOPK: tl.constexpr,
    HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, N_SPLIT: tl.constexpr,
    NW: tl.constexpr, RPT: tl.constexpr, GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr,
    SPLIT_P2: tl.constexpr, SWIZZLED: tl.constexpr, PDL: tl.constexpr,
):
    BR: tl.constexpr = 8 * NW * RPT
    SLICES: tl.constexpr = N_SPLIT // TOPK  # K slices per expert
    q = tl.program_id(0)  # K slices (expert, K range) fastest (``_dec2_gemv``)
    pid_r = tl.program_id(1)
    t = tl.program_id(2)
    p = t * TOPK + q // SLICES
    after = pdl_wait(PDL)  # gate_up's activations (and, before it, the routing)
    e = tl.load(ids_ptr + after + p).to(tl.int64)
    weight = tl.load(wts_ptr + after + p).to(tl.float32)
    x_row = act_ptr + after + p.to(tl.int64) * I
    r0 = pid_r * 2 * BR
    first = (e * H + r0) * KP_BLOCKS
    accs, g = slice_sums(dq_ptr + first * 4, dq_ptr + (first + BR * KP_BLOCKS) * 4, ds_ptr + first,
                         ds_ptr + first + BR * KP_BLOCKS, x_row, H - r0, H - r0 - BR, (q % SLICES) * GROUPS, I,
                         KP_BLOCKS, NW, RPT, GROUPS, PF, HINT, SWIZZLED, INTERPRET)
    stride_split = tl.num_programs(2) * H  # workspace [slices, T, H]
    out = part_ptr + q * stride_split + t * H + r0
    for s in tl.static_range(RPT):
        lo, hi, rows = _rows_of(accs, g, NW, RPT, s)
        tl.store(out + rows, lo * weight, mask=r0 + rows < H)
        tl.store(out + BR + rows, hi * weight, mask=r0 + BR + rows < H)
    group = t * tl.num_programs(1) + pid_r
    if arrive(cnt_ptr, group, N_SPLIT):
        n = r0 + tl.arange(0, 2 * BR)
        down_finish(y_ptr, db_ptr, ids_ptr, wts_ptr, part_ptr, t, n, n < H, H, stride_split, N_SPLIT,
                     TOPK, HAS_BIAS, INTERPRET, SPLIT_P2)
        release(cnt_ptr, group)


def _launch(kernel, grid: tuple[int, int, int], cfg: MmaConfig, args: tuple, **meta) -> None:
    kernel[grid](*args, **meta, **cfg.meta(), **cfg.launch_options())


def moe_decode_mma(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, alpha: float,
                   limit: float, gate_up: MmaConfig, down: MmaConfig) -> torch.Tensor:
    """Decode path on fma8 experts, tensor-core decode. ``x`` ``[T, H]`` (read as bf16), ``ids32`` int32
    ``[T, k]``, ``wts`` fp32 ``[T, k]``; I a multiple of 32 (the activations between the launches are
    read in whole MX blocks). No host synchronisation and no data-dependent sizes (graph-safe)."""
    t, k = ids32.shape
    i_dim, h_dim = w.intermediate, w.hidden
    if i_dim % 32:
        raise ValueError(f"the tensor-core MoE decode needs I a multiple of 32, got {i_dim} (use cuda_cores=True)")
    pairs = t * k
    kb_h, kb_i = w.glu.k_padded // 32, w.down.k_padded // 32
    xb = whole_blocks(x, kb_h)
    act = torch.empty((pairs, i_dim), dtype=torch.bfloat16, device=x.device)
    y = torch.empty((t, h_dim), dtype=torch.bfloat16, device=x.device)
    s_gu, s_dn = gate_up.slices(kb_h), down.slices(kb_i)
    part_g = torch.empty((s_gu, pairs, 2, i_dim), dtype=torch.float32, device=x.device)
    part_d = torch.empty((k * s_dn, t, h_dim), dtype=torch.float32, device=x.device)
    rows_gu, rows_dn = triton.cdiv(i_dim, gate_up.rows), triton.cdiv(h_dim, 2 * down.rows)
    cnt = splitk_counters(x.device, max(pairs * rows_gu, t * rows_dn))
    bias = lambda b: act if b is None else b  # noqa: E731
    common = dict(HAS_BIAS=w.has_bias, INTERPRET=is_interpreter())
    _launch(_gate_up_mma_kernel, (s_gu, rows_gu, pairs), gate_up,
            (xb, ids32, code_pointer(w.glu), w.glu.scales, code_pointer(w.linear), w.linear.scales,
             bias(w.glu_bias), bias(w.linear_bias), act, part_g, cnt,
             i_dim, h_dim, t, xb.stride(0), kb_h, k, alpha, limit),
            N_SPLIT=s_gu, SPLIT_P2=triton.next_power_of_2(s_gu), SWIZZLED=layout_code(w.glu), **common)
    _launch(_down_mma_kernel, (k * s_dn, rows_dn, t), down,
            (act, ids32, wts, code_pointer(w.down), w.down.scales, bias(w.down_bias), y, part_d,
             cnt, i_dim, h_dim, t, kb_i),
            TOPK=k, N_SPLIT=k * s_dn, SPLIT_P2=triton.next_power_of_2(k * s_dn), SWIZZLED=layout_code(w.down),
            **common)
    return y if x.dtype == torch.bfloat16 else y.to(x.dtype)
