"""Kernel layouts of MXFP4 codes, chosen once at load time.

``"ocp"`` is the checkpoint layout: in each little-endian 32-bit word, element ``j`` of
8 consecutive K values sits in bits ``4j..4j+3`` (mantissa, exponent lo, exponent hi,
sign). ``tl.dot_scaled`` reads it as is.

``"fma8"`` permutes the bits inside each word (same bytes, same size) so that a CUDA-core
kernel turns an element into an exact fp32 with one shift and one mask: element ``j``'s
(m, e0, e1, s) bits land on fp32 bits (22, 23, 24, 31), which read as ``value * 2**-126``
(E2M1's exponent field is fp32's, its subnormal 0.5 becomes fp32's subnormal 2**-127).
A 32-bit word cannot hold eight {a, a+1, a+2, a+9} patterns side by side (we searched),
so six elements take the one-shift form and two take three shift-mask pieces: 23 integer
operations per 8 weights instead of 32 for the natural layout.

``"fma8t"`` is fma8 with the 16-byte MX blocks (and their scale bytes) moved so that a
decode kernel's K step is one contiguous tile: within each matrix, rows go in tiles of 8,
and a tile's blocks in groups of 2 along K, stored ``[row tile, group, row, block]``. A warp
that reads 8 rows x 4 blocks (64 bytes a row, what the tensor-core decode of
``_dec2_mma.py`` reads a step) then reads 512 contiguous bytes (two groups), a 64-weight K
step of the Triton tiles 256, and a program's whole K slice is one run of memory. Why: on
the H100 (``benchmarks.harness.read_pattern``, docs/perf-log/kernels-mxfp4.md) 32 bytes a row a step of
row-major codes streamed at 2.0-2.3 TB/s, the same bytes in step-contiguous tiles at
2.96-3.0 TB/s. Groups of 2 keep every group whole for K a multiple of 64 (gpt-oss's 2880 is
90 blocks); an odd last block is stored ``[row]`` on its own, so nothing is padded: block
``(n, b)`` of an ``[N, KB]`` matrix sits at block slot ``tile_slot(n, b, KB)`` (``N`` a
multiple of 8). Same bytes, same size, same tensor shapes; the codes inside each word are
fma8's. Which weights take it: ``ops.to_kernel_layout``.
"""

from __future__ import annotations

import torch

from quartet.kernels.mxfp4.format import MXFP4Tensor

LAYOUTS = ("ocp", "fma8", "fma8t")
FMA8_LAYOUTS = ("fma8", "fma8t")  # fma8 code words, row-major or tiled
# "fma8t": rows a tile, MX blocks a group. The kernels' address arithmetic (_tile.row_starts, k_words,
# k_scales and the PTX of _dec2_mma.load_asm) is written for these two values.
TILE_ROWS = 8
TILE_BLOCKS = 2


def layout_code(w: MXFP4Tensor) -> int:
    """The kernels' ``SWIZZLED`` constexpr: 0 "ocp" (bytes), 1 "fma8" (int32 words), "fma8t" 2 when a
    row's last group is one block, 3 when every group is whole (rows 8 words apart in every group,
    so a row's K offsets do not depend on the row)."""
    if w.layout != "fma8t":
        return LAYOUTS.index(w.layout)
    return 3 if (w.k_padded // 32) % TILE_BLOCKS == 0 else 2


# Bit positions of (m, e0, e1, s) for element j of a word in the fma8 layout.
FMA8_POSITIONS = (
    (0, 1, 2, 9), (3, 4, 5, 12), (6, 7, 8, 15), (16, 17, 18, 25), (19, 20, 21, 28), (22, 23, 24, 31),
    (10, 11, 13, 14), (26, 27, 29, 30),
)


def _words(blocks: torch.Tensor) -> torch.Tensor:
    return blocks.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def _from_words(words: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    signed = torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)
    return signed.view(torch.uint8).reshape(like.shape)


def _permute(blocks: torch.Tensor, src: tuple[tuple[int, ...], ...], dst: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    words = _words(blocks)
    out = torch.zeros_like(words)
    for s_bits, d_bits in zip(src, dst):
        for s, d in zip(s_bits, d_bits):
            out |= ((words >> s) & 1) << d
    return _from_words(out, blocks)


_OCP_POSITIONS = tuple(tuple(4 * j + b for b in range(4)) for j in range(8))


def tile_slot(n: torch.Tensor, b: torch.Tensor, kb: int) -> torch.Tensor:
    """Block slot (in 16-byte blocks from the matrix's start) of block ``b`` of row ``n`` in "fma8t"."""
    group = b // TILE_BLOCKS
    width = torch.clamp(kb - group * TILE_BLOCKS, max=TILE_BLOCKS)
    return ((n // TILE_ROWS) * TILE_ROWS * kb + group * TILE_ROWS * TILE_BLOCKS + (n % TILE_ROWS) * width
            + b % TILE_BLOCKS)


def _slots(n: int, kb: int, device: torch.device) -> torch.Tensor:
    rows = torch.arange(n, device=device)[:, None]
    blocks = torch.arange(kb, device=device)[None, :]
    return tile_slot(rows, blocks, kb).reshape(-1)


def tileable(w: MXFP4Tensor) -> bool:
    """Whether "fma8t" can hold ``w``: whole tiles of 8 rows."""
    return w.n % TILE_ROWS == 0


def _tile_tensor(w: MXFP4Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    n, kb = w.n, w.k_padded // 32
    blocks = w.blocks.contiguous().reshape(-1, n * kb, 16)
    scales = w.scales.contiguous().reshape(-1, n * kb)
    slots = _slots(n, kb, w.blocks.device)
    out_b, out_s = torch.empty_like(blocks), torch.empty_like(scales)
    if inverse:
        out_b[:], out_s[:] = blocks[:, slots], scales[:, slots]
    else:
        out_b[:, slots], out_s[:, slots] = blocks, scales
    return out_b.reshape(w.blocks.shape), out_s.reshape(w.scales.shape)


def to_layout(w: MXFP4Tensor, layout: str) -> MXFP4Tensor:
    """The same tensor in another code layout ("fma8t" needs N a multiple of 8, see ``tileable``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == w.layout:
        return w
    if w.layout == "fma8t":  # untile first, then change the words
        blocks, scales = _tile_tensor(w, inverse=True)
        return to_layout(MXFP4Tensor(blocks, scales, w.k, "fma8"), layout)
    if layout == "fma8t":
        if not tileable(w):
            raise ValueError(f"the fma8t layout needs N a multiple of {TILE_ROWS}, got N={w.n}")
        fma8 = to_layout(w, "fma8")
        blocks, scales = _tile_tensor(fma8, inverse=False)
        return MXFP4Tensor(blocks, scales, w.k, "fma8t")
    if layout == "fma8":
        blocks = _permute(w.blocks, _OCP_POSITIONS, FMA8_POSITIONS)
    else:
        blocks = _permute(w.blocks, FMA8_POSITIONS, _OCP_POSITIONS)
    return MXFP4Tensor(blocks, w.scales, w.k, layout)
