"""Decode GEMV at one activation row on the tensor cores (``_dec2_mma.py``): ``y = x @ W^T``.

A program multiplies two tiles of ``BR`` consecutive rows (lo, hi: one ``mma`` serves both)
over one K slice of ``4 * GROUPS`` MX blocks. One K slice stores y directly; several publish
fp32 partials and the last arrival of a row group sums them in a fixed order
(``_epilogue``): deterministic, one launch, counters reset in the kernel (graph-safe).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._dec2_mma import pdl_wait, slice_sums
from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._epilogue import arrive, gather_tile, release
from quartet.kernels.mxfp4._fma import MmaConfig
from quartet.kernels.mxfp4._launch import splitk_counters, whole_blocks
from quartet.kernels.mxfp4._matmul import code_pointer
from quartet.kernels.mxfp4._tile import cast_out
from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.layout import layout_code


@triton.jit
def _finish(y, y_ptr, b_ptr, rows, n_ok, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    if HAS_BIAS:
        y += tl.load(b_ptr + rows, mask=n_ok, other=0.0).to(tl.float32)
    tl.store(y_ptr + rows, cast_out(y, y_ptr.dtype.element_ty, INTERPRET), mask=n_ok)


@triton.jit
def _publish(y, rows, N, part_ptr, pid_s, n_split: tl.constexpr, y_ptr, b_ptr, HAS_BIAS: tl.constexpr,
             INTERPRET: tl.constexpr):
    """One K slice: store. Several: the slice's partial (workspace ``[slices, N]``)."""
    if n_split == 1:
        _finish(y, y_ptr, b_ptr, rows, rows < N, HAS_BIAS, INTERPRET)
    else:
        tl.store(part_ptr + pid_s * N + rows, y, mask=rows < N)


@triton.jit
def _gemv_mma_kernel(
    x_ptr, w_ptr, ws_ptr, b_ptr, y_ptr, part_ptr, cnt_ptr, N, K, KP_BLOCKS,
    HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, N_SPLIT: tl.constexpr,
    NW: tl.constexpr, RPT: tl.constexpr, GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr,
    SPLIT_P2: tl.constexpr, SWIZZLED: tl.constexpr, PDL: tl.constexpr,
):
    BR: tl.constexpr = 8 * NW * RPT  # rows a tile; a program takes two (lo, hi)
    # K slices vary fastest: a row group's slices run side by side, so its partials are summed while
    # still in L2 and the fix-ups spread over the launch instead of piling up in its tail.
    pid_s = tl.program_id(0)
    pid_r = tl.program_id(1)
    r0 = pid_r * 2 * BR
    wl = w_ptr + r0.to(tl.int64) * KP_BLOCKS * 4
    sl = ws_ptr + r0.to(tl.int64) * KP_BLOCKS
    x_ptr += pdl_wait(PDL)
    accs, g = slice_sums(wl, wl + BR * KP_BLOCKS * 4, sl, sl + BR * KP_BLOCKS, x_ptr, N - r0, N - r0 - BR,
                         pid_s * GROUPS, K, KP_BLOCKS, NW, RPT, GROUPS, PF, HINT, SWIZZLED, INTERPRET)
    # Each thread's rows come back from slice_sums (the four lanes of a quad store the same sum).
    _publish(accs[0], r0 + g, N, part_ptr, pid_s, N_SPLIT, y_ptr, b_ptr, HAS_BIAS, INTERPRET)
    _publish(accs[1], r0 + BR + g, N, part_ptr, pid_s, N_SPLIT, y_ptr, b_ptr, HAS_BIAS, INTERPRET)
    if RPT == 2:
        _publish(accs[2], r0 + 8 * NW + g, N, part_ptr, pid_s, N_SPLIT, y_ptr, b_ptr, HAS_BIAS, INTERPRET)
        _publish(accs[3], r0 + BR + 8 * NW + g, N, part_ptr, pid_s, N_SPLIT, y_ptr, b_ptr, HAS_BIAS, INTERPRET)
    if N_SPLIT > 1:
        if arrive(cnt_ptr, pid_r, N_SPLIT):
            rows = r0 + tl.arange(0, 2 * BR)
            _finish(gather_tile(part_ptr, rows, rows < N, N, N_SPLIT, SPLIT_P2), y_ptr, b_ptr, rows, rows < N,
                    HAS_BIAS, INTERPRET)
            release(cnt_ptr, pid_r)


def gemv_mma(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None, cfg: MmaConfig) -> torch.Tensor:
    """One row ``x[1, K]`` (read as bf16) times fma8 ``w[N, K]``: ``[1, N]`` in x's dtype."""
    n, k_blocks = w.n, w.k_padded // 32
    xb = whole_blocks(x.reshape(1, -1), k_blocks).reshape(-1)
    y = torch.empty((1, n), dtype=x.dtype, device=x.device)
    slices = cfg.slices(k_blocks)
    row_groups = triton.cdiv(n, 2 * cfg.rows)
    if row_groups > 65535:  # the grid's second dimension (K slices go first)
        raise ValueError(f"the mma GEMV takes at most {65535 * 2 * cfg.rows} rows with {cfg.rows}-row tiles, got {n}")
    part = torch.empty((slices, n), dtype=torch.float32, device=x.device)
    cnt = splitk_counters(x.device, row_groups)
    _gemv_mma_kernel[(slices, row_groups)](
        xb, code_pointer(w), w.scales, bias if bias is not None else y, y, part, cnt, n, w.k, k_blocks,
        HAS_BIAS=bias is not None, INTERPRET=is_interpreter(), N_SPLIT=slices,
        SPLIT_P2=triton.next_power_of_2(slices), SWIZZLED=layout_code(w), **cfg.meta(), **cfg.launch_options())
    return y


def gemv_mma_default(n: int, k_blocks: int, sms: int, tiled: bool = False) -> MmaConfig:
    """Fixed launch (no autotuning). H100 run F3 (docs/perf-log/kernels-mxfp4.md) on 28672x8192: K slices of 16
    blocks, 4 warps of two rows a thread, two groups loaded ahead with the L2 fetch hint, 63.8 us.
    On "fma8t" codes (``tiled``) one group ahead and, since the block scales moved to the fp32 sums
    (run I), one row a thread: 51.9-52.3 us against 53.3-53.5 for two rows (I2, I3), launched
    with PDL (0.3-0.4 us, run I10: the next launch's programs are placed while this one drains);
    the loads of a tile are one run of memory, and fewer registers a thread keep more warps an SM. 2880-wide
    layers (which run the CUDA-core variant by default, ``gemv.py``) liked 12-block slices with 2
    warps of one row."""
    if k_blocks <= 128:
        return MmaConfig(num_warps=2, rpt=1, groups=min(3, triton.cdiv(k_blocks, 4)), prefetch=1 if tiled else 2,
                         hint=1)
    if tiled:
        return MmaConfig(num_warps=4, rpt=1, groups=4, prefetch=1, hint=1, pdl=True)
    return MmaConfig(num_warps=4, rpt=2, groups=4, prefetch=2, hint=1)
