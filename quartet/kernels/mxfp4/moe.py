"""gpt-oss MoE expert matmuls in MXFP4: gate_up with the clamped SwiGLU fused, then down.

For each token ``t`` and each of its top-k experts ``e`` with routing weight ``w``:

    g, l = x[t] @ glu[e]^T + bg[e],  x[t] @ linear[e]^T + bl[e]
    a    = min(g, limit) * sigmoid(alpha * min(g, limit)) * (clamp(l, -limit, limit) + 1)
    y[t] += w * (a @ down[e]^T + bd[e])

``a`` is rounded to bf16 between the two matmuls, as in the bf16 model. Two paths:

* decode (few tokens): with "fma8" experts, the CUDA-core kernels of ``moe_decode.py``;
  with "ocp" ones, one program per (pair, tile of I) for gate_up and one per (token,
  tile of H) for down, which loops over the token's k experts and sums in registers.
  Either way two launches, no sorting, no atomics on data, deterministic.
* grouped (decode batches, short prompts): pairs sorted by expert (``group_by_expert``),
  tiles of ``BM`` rows sharing one expert's MXFP4 weight tile, dequantized in registers for
  the tensor cores; down writes each pair's weighted row, and a sum over the k slots gives
  y (deterministic, no atomics). Each weight tile is read and decoded once per row tile, so
  the tiles grow with the pairs per expert. The default tiles are ``moe_grouped.py``'s
  (``GroupedConfig``); this file's ``GroupedTiles`` kernels are the earlier ones, kept for
  ``dot_scaled`` and as the benchmark's comparison.
* dense (long prompts, ``moe_dense.py``): the experts dequantized to bf16 once per call,
  then grouped bf16 GEMMs (``torch._grouped_mm`` by default, or Triton); compute-bound, so
  the per-tile decode is the cost to remove.

All paths group on the device into fixed-size buffers (no host sync): graph-capturable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._epilogue import sum_slots
from quartet.kernels.mxfp4._env import can_launch, is_interpreter
from quartet.kernels.mxfp4._launch import MODES
from quartet.kernels.mxfp4._matmul import code_pointer
from quartet.kernels.mxfp4._swiglu import SWIGLU_ALPHA, SWIGLU_LIMIT, swiglu
from quartet.kernels.mxfp4._tile import cast_out, mx_k_loop, mx_k_loop_pair, row_starts
from quartet.kernels.mxfp4.moe_decode import moe_decode_fma
from quartet.kernels.mxfp4.moe_dense import DenseConfig, moe_dense
from quartet.kernels.mxfp4.moe_grouped import GroupedConfig, grouped_config, moe_grouped
from quartet.kernels.mxfp4.layout import FMA8_LAYOUTS, layout_code
from quartet.kernels.mxfp4.moe_layout import ExpertGroups, MoEWeights, group_by_expert
from quartet.kernels.mxfp4.reference import mxfp4_moe_torch, route_torch

__all__ = ["MOE_DECODE_MAX_PAIRS", "MOE_DENSE_MIN_PAIRS", "MOE_PATHS", "GroupedConfig", "GroupedTiles", "mxfp4_moe_torch",
           "mxfp4_moe_triton", "route_torch"]

# H100, one gpt-oss-20b layer (docs/perf-log/kernels-mxfp4.md, "MoE grouped path"): at 64 pairs (16 tokens)
# the grouped tiles took 351 us and the decode path 423 us; at 32 pairs and below not measured,
# decode kept there.
MOE_DECODE_MAX_PAIRS = 32
# From this many (token, expert) pairs "dense_cublas" wins. H100, session 4 (`benchmarks.kernels --cases
# gpt_oss_moe`, CUDA-graph replays, docs/perf-log/kernels-mxfp4.md "Run G"): grouped against dense_cublas 1359
# against 1928 us at 8192 pairs, 1845 / 2226 at 12288, 2389 / 2489 at 16384, then 2897 / 2814 at
# 20480 and 3432 / 3052 at 24576; the crossover between 16384 and 20480. (It was 8192 while the
# grouped tiles were slower: 3343 us there in an earlier run.)
MOE_DENSE_MIN_PAIRS = 18432
#: The dense path "auto" takes from MOE_DENSE_MIN_PAIRS (a module setting, so the step benchmark can
#: compare). H100, an 8192-token prefill step (docs/perf-log/engine-gpu.md "Prefill step"): "dense_cublas"
#: 127.1 ms, "dense_cublas_split" 128.8, the in-register grouped tiles at 128 rows 149.4.
MOE_DENSE_PATH = "dense_cublas"
MOE_PATHS = ("auto", "decode", "grouped", "dense", "dense_cublas", "dense_cublas_split")
_FMA = -1  # MODE value of the CUDA-core loop (the tensor-core modes are in _launch.MODES)


@triton.jit
def _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, ids_ptr, pid_m, BM: tl.constexpr,
               GROUPED: tl.constexpr):
    """Rows of this program: (sorted row index, pair index, row mask, expert)."""
    if GROUPED:
        expert = tl.load(tile_expert_ptr + pid_m)
        rows = tl.load(tile_start_ptr + pid_m) + tl.arange(0, BM)
        ok = rows < tl.load(tile_end_ptr + pid_m)
        pair = tl.load(order_ptr + rows, mask=ok, other=0)
    else:
        expert = tl.load(ids_ptr + pid_m)
        rows = pid_m + tl.zeros((BM,), tl.int32)
        ok = tl.arange(0, BM) < 1
        pair = rows
    return rows, pair, ok, expert


@triton.jit
def _gate_up_kernel(
    x_ptr, ids_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr,
    gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr,
    I, H, stride_x, KP_BLOCKS, TOPK, alpha, limit,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUPED: tl.constexpr, HAS_BIAS: tl.constexpr,
    MODE: tl.constexpr, SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rows, pair, m_ok, e = _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, ids_ptr, pid_m,
                                     BM, GROUPED)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < I
    x_rows = x_ptr + (pair // TOPK).to(tl.int64) * stride_x
    w_row = e.to(tl.int64) * I + offs_n
    gq, gs, r8 = row_starts(gq_ptr, gs_ptr, w_row, KP_BLOCKS, SWIZZLED)
    lq, ls, r8 = row_starts(lq_ptr, ls_ptr, w_row, KP_BLOCKS, SWIZZLED)
    t1 = tl.where(tl.max(m_ok.to(tl.int32), axis=0) > 0, tl.cdiv(KP_BLOCKS * 32, BK), 0)
    acc_g = tl.zeros((BN, BM), tl.float32)
    acc_l = tl.zeros((BN, BM), tl.float32)
    acc_g, acc_l = mx_k_loop_pair(acc_g, acc_l, x_rows, m_ok, gq, gs, lq, ls, r8, n_ok, 0, t1, H, KP_BLOCKS,
                                  BN, BK, MODE, SWIZZLED, INTERPRET)
    if HAS_BIAS:
        acc_g += tl.load(gb_ptr + e * I + offs_n, mask=n_ok, other=0.0)[:, None]
        acc_l += tl.load(lb_ptr + e * I + offs_n, mask=n_ok, other=0.0)[:, None]
    act = swiglu(acc_g, acc_l, alpha, limit)
    tl.store(act_ptr + rows[None, :].to(tl.int64) * I + offs_n[:, None], cast_out(act, act_ptr.dtype.element_ty, INTERPRET),
             mask=n_ok[:, None] & m_ok[None, :])


@triton.jit
def _down_grouped_kernel(
    act_ptr, order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, wts_ptr,
    dq_ptr, ds_ptr, db_ptr, out_ptr,
    I, H, KP_BLOCKS,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, HAS_BIAS: tl.constexpr,
    MODE: tl.constexpr, SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rows, pair, m_ok, e = _tile_rows(order_ptr, tile_expert_ptr, tile_start_ptr, tile_end_ptr, order_ptr, pid_m,
                                     BM, True)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < H
    dq, ds, r8 = row_starts(dq_ptr, ds_ptr, e.to(tl.int64) * H + offs_n, KP_BLOCKS, SWIZZLED)
    t1 = tl.where(tl.max(m_ok.to(tl.int32), axis=0) > 0, tl.cdiv(KP_BLOCKS * 32, BK), 0)
    acc = tl.zeros((BN, BM), tl.float32)
    acc = mx_k_loop(acc, act_ptr + rows.to(tl.int64) * I, m_ok, dq, ds, r8,
                    n_ok, 0, t1, I, KP_BLOCKS, BN, BK, False, MODE, SWIZZLED, INTERPRET)
    if HAS_BIAS:
        acc += tl.load(db_ptr + e * H + offs_n, mask=n_ok, other=0.0)[:, None]
    acc *= tl.load(wts_ptr + pair, mask=m_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + pair[None, :].to(tl.int64) * H + offs_n[:, None], acc, mask=n_ok[:, None] & m_ok[None, :])


@triton.jit
def _down_decode_kernel(
    act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr,
    I, H, KP_BLOCKS, TOPK: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, HAS_BIAS: tl.constexpr, MODE: tl.constexpr,
    SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_n = tl.program_id(0)
    t = tl.program_id(1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    n_ok = offs_n < H
    m_ok = tl.arange(0, BM) < 1
    out = tl.zeros((BN, BM), tl.float32)
    for j in tl.static_range(TOPK):
        p = t * TOPK + j
        e = tl.load(ids_ptr + p)
        dq, ds, r8 = row_starts(dq_ptr, ds_ptr, e.to(tl.int64) * H + offs_n, KP_BLOCKS, SWIZZLED)
        a_rows = act_ptr + p.to(tl.int64) * I + tl.zeros((BM,), tl.int64)
        acc = tl.zeros((BN, BM), tl.float32)
        acc = mx_k_loop(acc, a_rows, m_ok, dq, ds, r8, n_ok,
                        0, tl.cdiv(KP_BLOCKS * 32, BK), I, KP_BLOCKS, BN, BK, False, MODE, SWIZZLED, INTERPRET)
        if HAS_BIAS:
            acc += tl.load(db_ptr + e * H + offs_n, mask=n_ok, other=0.0)[:, None]
        out += tl.load(wts_ptr + p).to(tl.float32) * acc
    y = tl.sum(tl.where(m_ok[None, :], out, 0.0), axis=1)
    tl.store(y_ptr + t.to(tl.int64) * H + offs_n, cast_out(y, y_ptr.dtype.element_ty, INTERPRET), mask=n_ok)


def _check(x: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, w: MoEWeights) -> None:
    if x.dim() != 2 or x.shape[1] != w.hidden:
        raise ValueError(f"x must be [T, {w.hidden}], got {tuple(x.shape)}")
    if ids.shape != weights.shape or ids.dim() != 2 or ids.shape[0] != x.shape[0]:
        raise ValueError(f"ids and weights must both be [T={x.shape[0]}, k], got {tuple(ids.shape)}, "
                         f"{tuple(weights.shape)}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids must be int32 or int64, got {ids.dtype}")
    if not can_launch(x):
        raise RuntimeError("mxfp4_moe_triton needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU); "
                           "use mxfp4_moe_torch on the CPU")


def _mode(mode: str | None, path: str, layout: str) -> int:
    """The kernels' MODE: "fma" (CUDA cores, decode on fma8 weights) or a tensor-core mode."""
    if mode is None:
        mode = ("fma" if path == "decode" else "dequant_dot") if layout in FMA8_LAYOUTS else "dot_scaled"
    if mode == "fma":
        if path != "decode" or layout not in FMA8_LAYOUTS:
            raise ValueError("mode 'fma' is the decode path on fma8 weights")
        return _FMA
    if mode not in MODES:
        raise ValueError(f"mode must be 'fma' or one of {sorted(MODES)}, got {mode!r}")
    if mode == "dot_scaled" and layout != "ocp":
        raise ValueError("dot_scaled reads the ocp layout")
    return MODES[mode]


@dataclass(frozen=True, slots=True)
class GroupedTiles:
    """One launch pair of the in-register grouped path: ``block`` sorted pairs a tile, ``bn`` /
    ``bn_down`` weight rows a program, ``bk_h`` / ``bk_i`` codes along K (None: the largest fitting)."""

    block: int
    bn: int = 64
    bn_down: int = 64
    bk_h: int | None = None
    bk_i: int | None = None
    num_warps: int = 4
    num_stages: int = 3


def grouped_tiles(pairs: int, experts: int) -> GroupedTiles:
    """Rows per tile: about what the average expert gets (16 to 64), so most experts' weights are
    read and decoded once. Eight warps from 64 rows: two fp32 accumulators of BN x BM."""
    block = 64 if pairs >= 64 * experts else 32 if pairs >= 16 * experts else 16
    return GroupedTiles(block=block, num_warps=8 if block >= 64 else 4)


def mxfp4_moe_triton(
    x: torch.Tensor,
    ids: torch.Tensor,
    weights: torch.Tensor,
    w: MoEWeights,
    *,
    alpha: float = SWIGLU_ALPHA,
    limit: float = SWIGLU_LIMIT,
    path: str = "auto",
    mode: str | None = None,
    config: GroupedConfig | GroupedTiles | DenseConfig | None = None,
) -> torch.Tensor:
    """MoE experts for tokens ``x[T, H]`` routed to ``ids[T, k]`` with ``weights[T, k]``: ``[T, H]`` in x's dtype.

    ``path``: "auto" picks by the number of (token, expert) pairs: "decode" up to
    ``MOE_DECODE_MAX_PAIRS``, ``MOE_DENSE_PATH`` from ``MOE_DENSE_MIN_PAIRS``, "grouped" between.
    "dense" dequantizes the experts to bf16 and runs grouped Triton GEMMs; "dense_cublas"
    the same with one ``torch._grouped_mm`` for gate and up together ("_split": two).
    ``mode`` (decode and grouped): how MXFP4 tiles multiply; by default "fma" for decode on fma8
    weights, else the tensor cores ("dequant_dot" on fma8, "dot_scaled" on ocp). ``config``: for
    "grouped" a ``GroupedConfig`` (``moe_grouped.py``: the default, tiles decoded in registers)
    or a ``GroupedTiles`` (the earlier tiles, also the default where ``mode="dot_scaled"`` is
    named); a ``DenseConfig`` for "dense" (defaults by pair count).
    """
    _check(x, ids, weights, w)
    t, k = ids.shape
    if path not in MOE_PATHS:
        raise ValueError(f"path must be one of {MOE_PATHS}, got {path!r}")
    if path == "auto":
        pairs = t * k
        path = ("decode" if pairs <= MOE_DECODE_MAX_PAIRS else
                MOE_DENSE_PATH if pairs >= MOE_DENSE_MIN_PAIRS else "grouped")
    if path.startswith("dense"):
        if mode is not None:
            raise ValueError(f"mode {mode!r} applies to the decode and grouped paths; {path!r} multiplies bf16")
        m = None
    else:
        m = _mode(mode, path, w.layout)
    if t == 0:
        return torch.zeros_like(x)
    x = x.contiguous()
    ids32 = ids.to(torch.int32).contiguous()
    wts = weights.float().contiguous()
    if path.startswith("dense"):
        if config is not None and not isinstance(config, DenseConfig):
            raise TypeError(f"path {path!r} takes a DenseConfig, got {type(config).__name__}")
        return moe_dense(x, ids32, wts, w, alpha, limit, path.removeprefix("dense_") if "_" in path else "triton",
                         config)
    if path == "grouped":
        if config is not None and not isinstance(config, (GroupedConfig, GroupedTiles)):
            raise TypeError(f"path 'grouped' takes GroupedConfig or GroupedTiles, got {type(config).__name__}")
        named_scaled = mode is not None and m == MODES["dot_scaled"]
        if config is None:
            # dot_scaled asked for by name runs on the earlier tiles; the new ones decode in registers.
            config = (grouped_tiles(t * k, w.num_experts) if named_scaled
                      else grouped_config(t * k, w.num_experts, w.layout))
        if isinstance(config, GroupedConfig) and named_scaled:
            raise ValueError(f"GroupedConfig tiles decode in registers (mode 'dequant_dot'), not {mode!r}")
        groups = group_by_expert(ids32, w.num_experts, config.block)
        if isinstance(config, GroupedTiles):
            return _grouped(x, groups, wts, w, k, alpha, limit, config, m)
        return moe_grouped(x, groups, wts, w, k, alpha, limit, config)
    if m == _FMA:
        return moe_decode_fma(x, ids32, wts, w, alpha, limit)
    return _decode_dot(x, ids32, wts, w, alpha, limit, m)


def _bk(dim: int) -> int:
    return 256 if dim >= 256 else 128 if dim >= 128 else 64


def _decode_dot(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, alpha: float, limit: float,
                mode: int) -> torch.Tensor:
    """Decode on the tensor cores: one program per (pair, I tile), then per (token, H tile)."""
    t, k = ids32.shape
    i_dim, h_dim = w.intermediate, w.hidden
    act = torch.empty((t * k, i_dim), dtype=torch.bfloat16, device=x.device)
    interp = is_interpreter()
    bias = lambda b: act if b is None else b  # noqa: E731
    bm, bn = 16, 32
    _gate_up_kernel[(triton.cdiv(i_dim, bn), t * k)](
        x, ids32, ids32, ids32, ids32, ids32,
        code_pointer(w.glu), w.glu.scales, code_pointer(w.linear), w.linear.scales,
        bias(w.glu_bias), bias(w.linear_bias), act,
        i_dim, h_dim, x.stride(0), w.glu.k_padded // 32, k, alpha, limit,
        BM=bm, BN=bn, BK=_bk(h_dim), GROUPED=False, HAS_BIAS=w.has_bias, MODE=mode, SWIZZLED=layout_code(w.glu),
        INTERPRET=interp, num_warps=4, num_stages=4,
    )
    y = torch.empty((t, h_dim), dtype=x.dtype, device=x.device)
    bn_down = 16
    _down_decode_kernel[(triton.cdiv(h_dim, bn_down), t)](
        act, ids32, wts, code_pointer(w.down), w.down.scales, bias(w.down_bias), y,
        i_dim, h_dim, w.down.k_padded // 32, TOPK=k,
        BM=bm, BN=bn_down, BK=_bk(i_dim), HAS_BIAS=w.has_bias, MODE=mode, SWIZZLED=layout_code(w.down),
        INTERPRET=interp,
        num_warps=4, num_stages=4,
    )
    return y


def _grouped(x: torch.Tensor, groups: ExpertGroups, wts: torch.Tensor, w: MoEWeights, k: int, alpha: float,
             limit: float, tiles: GroupedTiles, mode: int) -> torch.Tensor:
    i_dim, h_dim = w.intermediate, w.hidden
    act = torch.empty((x.shape[0] * k, i_dim), dtype=torch.bfloat16, device=x.device)
    bm = groups.block
    tile_args = (groups.order, groups.tile_expert, groups.tile_start, groups.tile_end)
    bias = lambda b: act if b is None else b  # noqa: E731
    interp = is_interpreter()
    _gate_up_kernel[(triton.cdiv(i_dim, tiles.bn), groups.num_tiles)](
        x, groups.order, *tile_args,
        code_pointer(w.glu), w.glu.scales, code_pointer(w.linear), w.linear.scales,
        bias(w.glu_bias), bias(w.linear_bias), act,
        i_dim, h_dim, x.stride(0), w.glu.k_padded // 32, k, alpha, limit,
        BM=bm, BN=tiles.bn, BK=tiles.bk_h or _bk(h_dim), GROUPED=True, HAS_BIAS=w.has_bias, MODE=mode,
        SWIZZLED=layout_code(w.glu), INTERPRET=interp, num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    out = torch.empty((act.shape[0], h_dim), dtype=torch.float32, device=x.device)
    _down_grouped_kernel[(triton.cdiv(h_dim, tiles.bn_down), groups.num_tiles)](
        act, *tile_args, wts, code_pointer(w.down), w.down.scales, bias(w.down_bias), out,
        i_dim, h_dim, w.down.k_padded // 32,
        BM=bm, BN=tiles.bn_down, BK=tiles.bk_i or _bk(i_dim), HAS_BIAS=w.has_bias, MODE=mode,
        SWIZZLED=layout_code(w.down),
        INTERPRET=interp, num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return sum_slots(out, k, x.dtype)
