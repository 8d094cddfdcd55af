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
"""

from __future__ import annotations

import torch

from kernels.mxfp4.format import MXFP4Tensor

LAYOUTS = ("ocp", "fma8")

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


def to_layout(w: MXFP4Tensor, layout: str) -> MXFP4Tensor:
    """The same tensor in another code layout (scales are untouched)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == w.layout:
        return w
    if layout == "fma8":
        blocks = _permute(w.blocks, _OCP_POSITIONS, FMA8_POSITIONS)
    else:
        blocks = _permute(w.blocks, FMA8_POSITIONS, _OCP_POSITIONS)
    return MXFP4Tensor(blocks, w.scales, w.k, layout)
