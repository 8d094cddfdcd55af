"""The MXFP4 format (OCP Microscaling Formats v1.0, §5 and §6.3): torch reference code.

A row of K values is cut into blocks of 32 along K. Each block stores one shared
E8M0 scale byte (2**(byte - 127); 255 is NaN) and 32 E2M1 elements, two per byte,
the even element in the low nibble. This is the layout gpt-oss checkpoints use
(``*_blocks`` uint8 ``[..., N, K/32, 16]`` and ``*_scales`` uint8 ``[..., N, K/32]``).

Quantization rule (the spec's, stated exactly):

* ``shared_exp = floor(log2(amax)) - 2`` where ``amax`` is the block's largest
  magnitude and 2 is ``emax_elem`` of E2M1 (its largest normal is 1.5 * 2**2).
  ``floor(log2(.))`` comes from ``frexp`` so it is exact, never a rounded log.
  The exponent is clamped to [-127, 127]; an all-zero block gets -127 (byte 0),
  a block holding NaN or Inf gets the NaN scale (byte 255).
* Each element is ``v / 2**shared_exp`` rounded to the nearest E2M1 value, ties to
  the even code, and saturated to +-6 (values in [6, 8) after scaling clamp to 6).
  The sign is kept, so -0.0 and small negatives that round to zero encode as -0.

K that is not a multiple of 32 is padded with zeros up to the next multiple; the
tensor remembers its logical ``k`` and dequantizes back to exactly ``k`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK_SIZE = 32
SCALE_BIAS = 127
SCALE_NAN = 255
E2M1_EMAX = 2

# E2M1 code -> value; code bit 3 is the sign, bits 2..1 the exponent, bit 0 the mantissa.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)

# Round-to-nearest-even decision points between consecutive magnitudes; at a tie
# the even code wins, so ties at 0.25, 1.25, 2.5 and 5 round down (``>``) and ties
# at 0.75, 1.75 and 3.5 round up (``>=``).
_RNE_THRESHOLDS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True), (2.5, False), (3.5, True), (5.0, False))


@dataclass(frozen=True, slots=True)
class MXFP4Tensor:
    """A matrix, or a stack of matrices, quantized to MXFP4 along its last dimension.

    ``blocks``: uint8 ``[..., N, Kp/32, 16]``; ``scales``: uint8 ``[..., N, Kp/32]``;
    ``k``: the logical K (``Kp`` is ``k`` rounded up to a multiple of 32); ``layout``:
    how the codes sit inside each 32-bit word, "ocp" (the spec's and checkpoints') or a
    kernel layout from ``quartet.kernels.mxfp4.layout``.
    """

    blocks: torch.Tensor
    scales: torch.Tensor
    k: int
    layout: str = "ocp"

    def __post_init__(self) -> None:
        if self.blocks.dtype != torch.uint8 or self.scales.dtype != torch.uint8:
            raise TypeError(f"blocks and scales must be uint8, got {self.blocks.dtype} and {self.scales.dtype}")
        if self.blocks.dim() < 3 or self.blocks.shape[-1] != BLOCK_SIZE // 2:
            raise ValueError(f"blocks must be [..., N, K/32, 16], got {tuple(self.blocks.shape)}")
        if tuple(self.blocks.shape[:-1]) != tuple(self.scales.shape):
            raise ValueError(
                f"scales {tuple(self.scales.shape)} must equal blocks' leading dims {tuple(self.blocks.shape[:-1])}"
            )
        padded = self.blocks.shape[-2] * BLOCK_SIZE
        if not padded - BLOCK_SIZE < self.k <= padded:
            raise ValueError(f"k={self.k} does not fit {self.blocks.shape[-2]} blocks of {BLOCK_SIZE}")
        if self.blocks.device != self.scales.device:
            raise ValueError("blocks and scales must live on the same device")
        if self.layout not in ("ocp", "fma8", "fma8t"):
            raise ValueError(f"unknown layout {self.layout!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        """The logical shape ``(..., N, k)``."""
        return (*self.blocks.shape[:-2], self.k)

    @property
    def n(self) -> int:
        return int(self.blocks.shape[-3])

    @property
    def k_padded(self) -> int:
        return int(self.blocks.shape[-2]) * BLOCK_SIZE

    @property
    def device(self) -> torch.device:
        return self.blocks.device

    @property
    def nbytes(self) -> int:
        """Bytes a kernel must read to consume the whole tensor once."""
        return self.blocks.numel() + self.scales.numel()

    def to(self, device: torch.device | str) -> MXFP4Tensor:
        return MXFP4Tensor(self.blocks.to(device), self.scales.to(device), self.k, self.layout)

    def contiguous(self) -> MXFP4Tensor:
        return MXFP4Tensor(self.blocks.contiguous(), self.scales.contiguous(), self.k, self.layout)

    def __getitem__(self, index: int | slice | torch.Tensor) -> MXFP4Tensor:
        """Index the leading (stack) dimension, e.g. one expert of an MoE weight."""
        if self.blocks.dim() < 4:
            raise IndexError("only a stack of matrices can be indexed")
        return MXFP4Tensor(self.blocks[index], self.scales[index], self.k, self.layout)


def e2m1_encode(scaled: torch.Tensor) -> torch.Tensor:
    """fp32 values already divided by the block scale -> E2M1 codes (uint8, 0..15)."""
    mag = scaled.abs()
    code = torch.zeros(scaled.shape, dtype=torch.uint8, device=scaled.device)
    for threshold, inclusive in _RNE_THRESHOLDS:
        code += (mag >= threshold if inclusive else mag > threshold).to(torch.uint8)
    return code | (torch.signbit(scaled).to(torch.uint8) << 3)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 codes (uint8, 0..15) -> fp32 values (exact)."""
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    return table[codes.long()]


def e8m0_decode(scales: torch.Tensor) -> torch.Tensor:
    """E8M0 bytes -> fp32 powers of two, exactly: byte 0 is 2**-127 (subnormal), 255 is NaN."""
    exp = scales.to(torch.int32) - SCALE_BIAS
    out = torch.ldexp(torch.ones_like(exp, dtype=torch.float32), exp)
    return torch.where(scales == SCALE_NAN, torch.full_like(out, float("nan")), out)


def quantize_torch(w: torch.Tensor) -> MXFP4Tensor:
    """bf16/fp16/fp32 ``[..., N, K]`` -> MXFP4 along the last dim (the rule is in the module doc)."""
    if not w.is_floating_point():
        raise TypeError(f"quantize needs a floating-point tensor, got {w.dtype}")
    if w.dim() < 2:
        raise ValueError(f"quantize needs at least 2 dims [..., N, K], got {tuple(w.shape)}")
    k = int(w.shape[-1])
    pad = (-k) % BLOCK_SIZE
    x = w.float()
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    x = x.reshape(*x.shape[:-1], -1, BLOCK_SIZE)
    amax = x.abs().amax(dim=-1)
    _, exponent = torch.frexp(amax)  # amax = m * 2**exponent, m in [0.5, 1): floor(log2) = exponent - 1
    shared = (exponent - 1 - E2M1_EMAX).clamp(-SCALE_BIAS, SCALE_BIAS)
    shared = torch.where(amax == 0, torch.full_like(shared, -SCALE_BIAS), shared)
    scales = (shared + SCALE_BIAS).to(torch.uint8)
    scales = torch.where(torch.isfinite(amax), scales, torch.full_like(scales, SCALE_NAN))
    # Dividing by a power of two is exact, but 2**shared itself can be subnormal; ldexp keeps it exact.
    scaled = torch.ldexp(x, -shared.unsqueeze(-1).to(torch.int32))
    codes = e2m1_encode(scaled)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return MXFP4Tensor(packed.contiguous(), scales.contiguous(), k)
