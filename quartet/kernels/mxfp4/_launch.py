"""Launch heuristics: tile sizes, split-K and warps for each MXFP4 kernel, plus workspaces.

Decode (M <= 16) is a stream over the weights: the goal is enough programs in flight to
cover every SM a few times, each reading long contiguous rows (BK/2 bytes a row a step).
Prefill is tensor-core bound: large tiles, W's tile dequantized once and used against BM
activation rows. The numbers here were picked from the GPU sweep in ``benchmarks.kernels``
(see docs/perf-log/kernels-mxfp4.md); change them only with a new measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The ``MODE`` constexpr of ``_tile.mx_dot``: how a weight tile is multiplied.
MODES = {"dot_scaled": 0, "dequant_dot": 1}
DECODE_MAX_M = 16
# Rows the CUDA-core ("fma") GEMV kernel takes in one launch (each row's K slice lives in registers).
FMA_ROWS = 4
# The CUDA-core decode pays one FMA per weight and row (and is issue-bound already at one row);
# from two rows on the tensor cores won (H100 sweep, 2026-11-26: 28672x8192 at M = 2, 202 vs
# 143 us; at M = 4, 344 vs 142 us; 5760x2880 at M = 2, 20.4 vs 17.6 us; only 2880x2880 at
# M = 2 favoured the CUDA cores, 12.2 vs 18.4 us). See docs/perf-log/kernels-mxfp4.md.
FMA_MAX_M = 1


@dataclass(frozen=True, slots=True)
class MatmulConfig:
    """One launch of the MXFP4 matmul kernel. ``bm`` covers activation rows, ``bn`` weight rows."""

    bm: int
    bn: int
    bk: int
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3
    group: int = 8
    mode: str = "dot_scaled"

    def __post_init__(self) -> None:
        check_tiles(self, "two MX blocks, dot_scaled's minimum")
        if self.split_k < 1:
            raise ValueError("split_k must be >= 1")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")


def decode_config(m: int, n: int, k_padded: int, sms: int, mode: str = "dot_scaled") -> MatmulConfig:
    """Tensor-core skinny GEMM (M <= 16): 32 weight rows a program, split K until the grid covers the SMs.

    First H100 sweep: 32x512 tiles beat 64- and 128-row ones on 28672x8192 (the upcast's
    layout shuffles grow with the tile), and 32x128 with split-K 4 was best on 2880x2880.
    """
    bk = 512 if k_padded >= 4096 else 128 if k_padded >= 128 else 64
    bn = 32 if n >= 32 * sms else 16
    n_tiles = _cdiv(n, bn)
    k_tiles = _cdiv(k_padded, bk)
    split = 1
    while n_tiles * split < 2 * sms and split * 2 <= min(8, k_tiles // 2):
        split *= 2
    return MatmulConfig(bm=16, bn=bn, bk=bk, split_k=split, num_warps=4, num_stages=3, mode=mode)


def prefill_config(m: int, n: int, k_padded: int, sms: int, mode: str = "dot_scaled") -> MatmulConfig:
    """Tensor-core tiles for M > 16 (first H100 sweep at M = 2048 on 28672x8192: dequant_dot liked
    256 activation rows x 128 weight rows, dot_scaled 128 x 256 with BK 64); smaller activation
    tiles for medium M so the grid fills the chip."""
    if mode == "dot_scaled":
        bm = 128 if m > 64 else 64 if m > 32 else 32
        return MatmulConfig(bm=bm, bn=256 if m > 64 else 128, bk=64, num_warps=8, num_stages=3, mode=mode)
    bm = 256 if m >= 1024 else 128 if m > 64 else 64 if m > 32 else 32
    return MatmulConfig(bm=bm, bn=128, bk=128, num_warps=8 if bm >= 128 else 4, num_stages=3, mode=mode)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


_COUNTERS: dict[torch.device, torch.Tensor] = {}
_MIN_COUNTERS = 1 << 16


def splitk_counters(device: torch.device, count: int) -> torch.Tensor:
    """Zeroed int32 arrival counters, reset to zero by the kernel itself after each use.

    Allocated once per device and kept, so CUDA-graph captures see a stable address.
    """
    buf = _COUNTERS.get(device)
    if buf is None or buf.numel() < count:
        buf = torch.zeros(max(count, _MIN_COUNTERS), dtype=torch.int32, device=device)
        _COUNTERS[device] = buf
    return buf


def whole_blocks(x: torch.Tensor, k_blocks: int) -> torch.Tensor:
    """Activation rows ``x[T, K]`` as the tensor-core decode reads them: bf16, rows of whole MX blocks
    (``k_blocks * 32``, zero-padded), each row 16-byte aligned (the PTX loads a block's 64 bytes at once).
    ``x`` itself when it already is, so the common case adds no copy kernel to the step."""
    width = k_blocks * 32
    if (x.dtype == torch.bfloat16 and x.shape[-1] == width and x.stride(-1) == 1 and x.stride(0) % 8 == 0
            and x.data_ptr() % 16 == 0):
        return x
    xb = torch.nn.functional.pad(x.to(torch.bfloat16), (0, width - x.shape[-1]))
    return xb if xb.is_contiguous() and xb.data_ptr() % 16 == 0 else xb.contiguous().clone()


def splitk_buffers(y: torch.Tensor, split: int, num_tiles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 partial sums ``[split, m, n]``, arrival counters) for a one-launch split-K GEMM writing ``y``
    ``[m, n]``; with one split neither is read, and ``y`` stands in for both."""
    if split <= 1:
        return y, y
    m, n = y.shape
    return torch.empty((split, m, n), dtype=torch.float32, device=y.device), splitk_counters(y.device, num_tiles)


def check_tiles(config: object, bk_why: str) -> None:
    """``bm``, ``bn``, ``bk`` powers of two of at least 16 (``tl.dot``), ``bk`` at least 64 (``bk_why``)."""
    for name in ("bm", "bn", "bk"):
        value = getattr(config, name)
        if value < 16 or value & (value - 1):
            raise ValueError(f"{name}={value} must be a power of two >= 16")
    if config.bk < 64:  # type: ignore[attr-defined]
        raise ValueError(f"bk must be at least 64 ({bk_why})")

# From this many rows up, dequantizing to bf16 and calling cuBLAS beat the Triton tiles: at M = 256
# on five of the six H100 cases (all but the 201088-row unembedding) and at M = 2048 on all six.
# Below it, fma8 weights take ``gemm_skinny`` (H100, 2026-11-26, docs/perf-log/kernels-mxfp4.md "Dense linears
# at M = 64-256"): at M = 64 qkv 16.1 us and o 15.3 against 24.3 / 20.8 for dequantize + cuBLAS
# and 52 / 58 for the earlier dequant_dot tile; at M = 256 cuBLAS still won qkv (30.9 against
# 33.5) and o (22.3 against 29.4).
PREFILL_CUBLAS_MIN_M = 256
# ...except for weights at least this tall (the unembedding), which take ``gemm_skinny`` up to
# ``SKINNY_WIDE_MAX_M`` rows: the bf16 copy that the cuBLAS path writes and re-reads costs more
# than cuBLAS's faster matmul saves (201088 x 2880 at M = 256: 598 against 1149 us).
SKINNY_WIDE_MIN_N = 32768
SKINNY_WIDE_MAX_M = 1024
