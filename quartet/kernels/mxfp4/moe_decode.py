"""MoE decode on "fma8" experts: the entry point (``moe_decode_fma``), by default the tensor-core
decode of ``_dec2_moe.py``; below, the CUDA-core kernels (the GEMV loop of ``_fma.py`` with
fused epilogues), kept for their wider precision contract and as the measured baseline.

gate_up: a program holds one K slice of a (token, expert) pair's activations and streams
row chunks of that expert's glu and linear weights. With one K slice it adds the biases,
applies the clamped SwiGLU and writes bf16 activations itself; with several, each program
publishes its chunks' partials and arrives once on its row group's counter, and the last
arrival finishes every chunk of the group.

down: the k experts of a token become more K slices: slice ``q`` is expert ``q // S`` over
K range ``q % S``, already multiplied by its routing weight, so the fix-up's sum *is* the
weighted sum over experts; it adds ``sum_j w_j * bias[e_j]`` and writes y. Two launches
a layer, no sorting, no atomics on data (the slices are summed in a fixed order whoever
arrives last), counters reset in the kernel: deterministic and graph-safe.

CUDA-core launch configs: ``_fma.moe_fma_defaults`` by token count, or autotuned per (I, H, T).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._decode import block_dot, load_word_tile, load_x_blocks
from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._epilogue import arrive, down_finish, gather_tile, release, swiglu_store
from quartet.kernels.mxfp4._dec2_moe import moe_decode_mma
from quartet.kernels.mxfp4._fma import (MOE_DOWN_GRID, MOE_GATE_UP_GRID, MOE_MMA_MIN_TOKENS, MOE_MMA_MIN_TOKENS_TILED,
                                FmaConfig, MmaConfig, as_configs,
                                max_chunks, max_slices, moe_fma_defaults, moe_mma_defaults, use_autotune)
from quartet.kernels.mxfp4._launch import splitk_counters
from quartet.kernels.mxfp4._matmul import code_pointer
from quartet.kernels.mxfp4.layout import layout_code
from quartet.kernels.mxfp4.moe_layout import MoEWeights


def _split_p2(nargs: dict) -> int:
    """Power of two covering the split-K slices of gate_up (the fix-up loads them as one tile)."""
    return triton.next_power_of_2(triton.cdiv(nargs["KP_BLOCKS"] * 4, nargs["KW"]))


def _down_split_p2(nargs: dict) -> int:
    return triton.next_power_of_2(nargs["TOPK"] * triton.cdiv(nargs["KP_BLOCKS"] * 4, nargs["KW"]))


@triton.heuristics({"SPLIT_P2": _split_p2})
@triton.jit(do_not_specialize=["T"])  # T only keys the autotuner
def _gate_up_fma_kernel(
    x_ptr, ids_ptr, gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr, part_ptr, cnt_ptr,
    I, H, T, stride_x, KP_BLOCKS, TOPK, alpha, limit,
    HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr, INTERPRET: tl.constexpr, SWIZZLED: tl.constexpr,
    BN: tl.constexpr, KW: tl.constexpr, CHUNKS: tl.constexpr, SPLIT_P2: tl.constexpr,
):
    KB: tl.constexpr = KW // 4
    pid_r = tl.program_id(0)
    pid_s = tl.program_id(1)
    p = tl.program_id(2)
    n_split = tl.num_programs(1)
    e = tl.load(ids_ptr + p).to(tl.int64)
    b0 = pid_s * KB
    xs = load_x_blocks(x_ptr + (p // TOPK).to(tl.int64) * stride_x, b0 + tl.arange(0, KB), H, KB, EVEN_K)
    stride_split = tl.num_programs(2) * 2 * I
    first = pid_r * CHUNKS * BN
    offs_n = first + tl.arange(0, BN)
    wg, sg = load_word_tile(gq_ptr, gs_ptr, e * I + offs_n, offs_n < I, b0, KP_BLOCKS, KB, SWIZZLED)
    wl, sl = load_word_tile(lq_ptr, ls_ptr, e * I + offs_n, offs_n < I, b0, KP_BLOCKS, KB, SWIZZLED)
    for i in range(CHUNKS):
        offs_n = first + i * BN + tl.arange(0, BN)
        n_ok = offs_n < I
        # The next chunk's codes are requested before this chunk's math. ptxas still sinks them
        # below the FFMAs, but they stay in flight through the reduction, the stores and the
        # loop's back edge, where loads inside one iteration were waited for one by one.
        nxt_ok = (offs_n + BN < I) & (i + 1 < CHUNKS)
        wg_n, sg_n = load_word_tile(gq_ptr, gs_ptr, e * I + offs_n + BN, nxt_ok, b0, KP_BLOCKS, KB, SWIZZLED)
        wl_n, sl_n = load_word_tile(lq_ptr, ls_ptr, e * I + offs_n + BN, nxt_ok, b0, KP_BLOCKS, KB, SWIZZLED)
        acc_g = tl.sum(block_dot(wg, sg, xs), axis=1)
        acc_l = tl.sum(block_dot(wl, sl, xs), axis=1)
        if n_split == 1:
            swiglu_store(acc_g, acc_l, gb_ptr, lb_ptr, act_ptr, e, p, I, offs_n, n_ok, alpha, limit,
                          HAS_BIAS, INTERPRET)
        else:
            base = p * 2 * I + offs_n  # workspace [slices, pairs, 2, I]
            tl.store(part_ptr + pid_s * stride_split + base, acc_g, mask=n_ok)
            tl.store(part_ptr + pid_s * stride_split + base + I, acc_l, mask=n_ok)
        wg, sg, wl, sl = wg_n, sg_n, wl_n, sl_n
    if n_split > 1:
        # One arrival per program (not per chunk): the last of the row group's K slices
        # finishes all its chunks.
        group = p * tl.num_programs(0) + pid_r
        if arrive(cnt_ptr, group, n_split):
            for i in range(CHUNKS):
                offs_n = first + i * BN + tl.arange(0, BN)
                n_ok = offs_n < I
                base = p * 2 * I + offs_n
                g = gather_tile(part_ptr, base, n_ok, stride_split, n_split, SPLIT_P2)
                lin = gather_tile(part_ptr, base + I, n_ok, stride_split, n_split, SPLIT_P2)
                swiglu_store(g, lin, gb_ptr, lb_ptr, act_ptr, e, p, I, offs_n, n_ok, alpha, limit,
                              HAS_BIAS, INTERPRET)
            release(cnt_ptr, group)


@triton.heuristics({"SPLIT_P2": _down_split_p2})
@triton.jit(do_not_specialize=["T"])
def _down_fma_kernel(
    act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr, part_ptr, cnt_ptr,
    I, H, T, KP_BLOCKS, TOPK: tl.constexpr,
    HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr, INTERPRET: tl.constexpr, SWIZZLED: tl.constexpr,
    BN: tl.constexpr, KW: tl.constexpr, CHUNKS: tl.constexpr, SPLIT_P2: tl.constexpr,
):
    KB: tl.constexpr = KW // 4
    pid_r = tl.program_id(0)
    q = tl.program_id(1)
    t = tl.program_id(2)
    n_split = tl.num_programs(1)
    SLICES = tl.cdiv(KP_BLOCKS, KB)  # K slices per expert
    p = t * TOPK + q // SLICES
    e = tl.load(ids_ptr + p).to(tl.int64)
    weight = tl.load(wts_ptr + p).to(tl.float32)
    b0 = (q % SLICES) * KB
    xs = load_x_blocks(act_ptr + p.to(tl.int64) * I, b0 + tl.arange(0, KB), I, KB, EVEN_K)
    stride_split = tl.num_programs(2) * H
    first = pid_r * CHUNKS * BN
    offs_n = first + tl.arange(0, BN)
    w, s = load_word_tile(dq_ptr, ds_ptr, e * H + offs_n, offs_n < H, b0, KP_BLOCKS, KB, SWIZZLED)
    for i in range(CHUNKS):
        offs_n = first + i * BN + tl.arange(0, BN)
        n_ok = offs_n < H
        nxt_ok = (offs_n + BN < H) & (i + 1 < CHUNKS)
        w_n, s_n = load_word_tile(dq_ptr, ds_ptr, e * H + offs_n + BN, nxt_ok, b0, KP_BLOCKS, KB, SWIZZLED)
        acc = tl.sum(block_dot(w, s, xs), axis=1) * weight
        tl.store(part_ptr + q * stride_split + t * H + offs_n, acc, mask=n_ok)  # workspace [slices, T, H]
        w, s = w_n, s_n
    group = t * tl.num_programs(0) + pid_r
    if arrive(cnt_ptr, group, n_split):
        for i in range(CHUNKS):
            offs_n = first + i * BN + tl.arange(0, BN)
            down_finish(y_ptr, db_ptr, ids_ptr, wts_ptr, part_ptr, t, offs_n, offs_n < H, H, stride_split, n_split,
                        TOPK, HAS_BIAS, INTERPRET, SPLIT_P2)
        release(cnt_ptr, group)


# Keyed on the token count too: 1 and 8 tokens want different grids.
_gate_up_tuned = triton.autotune(configs=as_configs(MOE_GATE_UP_GRID), key=["I", "H", "T"])(_gate_up_fma_kernel)
_down_tuned = triton.autotune(configs=as_configs(MOE_DOWN_GRID), key=["I", "H", "T"])(_down_fma_kernel)


def moe_decode_fma(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, alpha: float, limit: float,
                   config: FmaConfig | MmaConfig | None = None, down_config: FmaConfig | MmaConfig | None = None,
                   *, cuda_cores: bool = False) -> torch.Tensor:
    """Decode path on fma8 experts. ``ids32`` int32 ``[T, k]``, ``wts`` fp32 ``[T, k]``.

    By default, from ``MOE_MMA_MIN_TOKENS`` tokens, the tensor-core decode (``_dec2_moe.py``)
    with fixed ``moe_mma_defaults`` (autotuning or not); ``MmaConfig`` launches pick it at any
    token count. Fewer tokens, fp32 activations, ``cuda_cores=True``, ``FmaConfig`` launches or an I
    that is not a multiple of 32 run the CUDA-core kernels here (``down_config`` defaults to ``config``;
    with neither, autotuned on CUDA, else ``moe_fma_defaults``). No host
    synchronisation and no data-dependent sizes, so it can be captured in a CUDA graph.
    """
    given = [c for c in (config, down_config) if c is not None]
    if len({type(c) for c in given}) > 1:
        raise TypeError("gate_up and down launches must both be MmaConfig or both FmaConfig")
    # The tensor-core decode reads the activations between its launches in whole MX blocks. It multiplies
    # bf16 operands, so fp32 activations (a model run in fp32 to check the kernels) keep the exact CUDA cores.
    tiled = w.layout == "fma8t"
    min_tokens = MOE_MMA_MIN_TOKENS_TILED if tiled else MOE_MMA_MIN_TOKENS
    by_default = (not given and not cuda_cores and ids32.shape[0] >= min_tokens and w.intermediate % 32 == 0
                  and x.dtype != torch.float32)  # fmt: skip
    if given and isinstance(given[0], MmaConfig) or by_default:
        gu, dn = moe_mma_defaults(ids32.shape[0], w.glu.k_padded // 32, w.down.k_padded // 32, tiled)
        return moe_decode_mma(x, ids32, wts, w, alpha, limit, config or gu, down_config or dn)
    return _moe_decode_cuda_cores(x, ids32, wts, w, alpha, limit, config, down_config)


def _moe_decode_cuda_cores(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, alpha: float,
                           limit: float, config: FmaConfig | None, down_config: FmaConfig | None) -> torch.Tensor:
    t, k = ids32.shape
    i_dim, h_dim = w.intermediate, w.hidden
    pairs = t * k
    kw_h, kw_i = w.glu.k_padded // 8, w.down.k_padded // 8
    tuned = config is None and down_config is None and use_autotune()
    if not tuned:
        fixed_gu, fixed_dn = moe_fma_defaults(t, kw_h, kw_i)
        cfg_gu = config or fixed_gu
        cfg_dn = down_config or config or fixed_dn
    else:
        cfg_gu = cfg_dn = None
    act = torch.empty((pairs, i_dim), dtype=torch.bfloat16, device=x.device)
    y = torch.empty((t, h_dim), dtype=x.dtype, device=x.device)
    part_g = torch.empty((max_slices(kw_h, cfg_gu, MOE_GATE_UP_GRID), pairs, 2, i_dim), dtype=torch.float32,
                         device=x.device)
    part_d = torch.empty((k * max_slices(kw_i, cfg_dn, MOE_DOWN_GRID), t, h_dim), dtype=torch.float32, device=x.device)
    cnt = splitk_counters(x.device, max(pairs * max_chunks(i_dim, cfg_gu, MOE_GATE_UP_GRID),
                                         t * max_chunks(h_dim, cfg_dn, MOE_DOWN_GRID)))
    bias = lambda b: act if b is None else b  # noqa: E731
    common = dict(HAS_BIAS=w.has_bias, INTERPRET=is_interpreter())
    gu_args = (x, ids32, code_pointer(w.glu), w.glu.scales, code_pointer(w.linear), w.linear.scales,
               bias(w.glu_bias), bias(w.linear_bias), act, part_g, cnt,
               i_dim, h_dim, t, x.stride(0), w.glu.k_padded // 32, k, alpha, limit)

    def gu_grid(meta: dict) -> tuple[int, int, int]:
        return triton.cdiv(triton.cdiv(i_dim, meta["BN"]), meta["CHUNKS"]), triton.cdiv(kw_h, meta["KW"]), pairs

    def down_grid(meta: dict) -> tuple[int, int, int]:
        return triton.cdiv(triton.cdiv(h_dim, meta["BN"]), meta["CHUNKS"]), k * triton.cdiv(kw_i, meta["KW"]), t

    if cfg_gu is None:
        _gate_up_tuned[gu_grid](*gu_args, EVEN_K=h_dim % 8 == 0, SWIZZLED=layout_code(w.glu), **common)
    else:
        _gate_up_fma_kernel[gu_grid(cfg_gu.meta())](*gu_args, EVEN_K=h_dim % 8 == 0, SWIZZLED=layout_code(w.glu),
                                                    **common, **cfg_gu.meta(),
                                                    num_warps=cfg_gu.num_warps, num_stages=cfg_gu.num_stages)
    down_args = (act, ids32, wts, code_pointer(w.down), w.down.scales, bias(w.down_bias), y, part_d, cnt,
                 i_dim, h_dim, t, w.down.k_padded // 32)
    if cfg_dn is None:
        _down_tuned[down_grid](*down_args, TOPK=k, EVEN_K=i_dim % 8 == 0, SWIZZLED=layout_code(w.down), **common)
    else:
        _down_fma_kernel[down_grid(cfg_dn.meta())](*down_args, TOPK=k, EVEN_K=i_dim % 8 == 0,
                                                   SWIZZLED=layout_code(w.down), **common,
                                                   **cfg_dn.meta(), num_warps=cfg_dn.num_warps,
                                                   num_stages=cfg_dn.num_stages)
    return y
