"""Decode "fma8" code words straight into bf16 pairs for the tensor cores (Hopper: ``mul.rn.bf16x2``).

The fma8 bit order (``layout.py``) repeats with a period of 16 bits: element ``j`` and
element ``j + 3`` (j < 3), and elements 6 and 7, sit 16 bits apart under the same shift.
One shift and one mask therefore place two elements' (m, e0, e1, s) bits on bf16 bits
(6, 7, 8, 15) of both halves of a 32-bit register, which read as two bf16 ``value *
2**-126`` (bf16 has fp32's exponent range; E2M1's 0.5 becomes the bf16 subnormal
2**-127). Two ``mul.rn.bf16x2`` by 2**126 and by the E8M0 scale give the weights: both
factors are powers of two, so the products are exact, as in the fp32 decode
(``_tile.dequant_tile``), and bit-identical to its bf16 rounding. Per 8 weights about 14
integer operations and 8 paired multiplies, against 23 integer operations, 16 fp32
multiplies and 4 conversions for the fp32 decode, and no fp32 -> bf16 conversion at all.

The interpreter cannot run PTX, so ``INTERPRET`` kernels keep the fp32 decode.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Per word: w = $8 (fma8 codes), $9 = the block's scale as a bf16 pair; outputs $0..$7 are
# elements 0..7 in natural K order.
_ASM = tl.constexpr("""
{
.reg .b32 p0, p1, p2, p3, u, v, c;
mov.b32 c, 0x7E807E80;
shl.b32 p0, $8, 6;
and.b32 p0, p0, 0x81C081C0;
shl.b32 p1, $8, 3;
and.b32 p1, p1, 0x81C081C0;
and.b32 p2, $8, 0x81C081C0;
shr.u32 u, $8, 4;
and.b32 u, u, 0x00C000C0;
shr.u32 v, $8, 5;
and.b32 v, v, 0x01000100;
or.b32 u, u, v;
shl.b32 v, $8, 1;
and.b32 v, v, 0x80008000;
or.b32 p3, u, v;
mul.rn.bf16x2 p0, p0, c;
mul.rn.bf16x2 p1, p1, c;
mul.rn.bf16x2 p2, p2, c;
mul.rn.bf16x2 p3, p3, c;
mul.rn.bf16x2 p0, p0, $9;
mul.rn.bf16x2 p1, p1, $9;
mul.rn.bf16x2 p2, p2, $9;
mul.rn.bf16x2 p3, p3, $9;
mov.b32 {$0, $3}, p0;
mov.b32 {$1, $4}, p1;
mov.b32 {$2, $5}, p2;
mov.b32 {$6, $7}, p3;
}
""")


@triton.jit
def e8m0_bf16_pair(scales):
    """E8M0 bytes -> int32 holding 2**(s-127) as bf16 in both halves (0: the subnormal 2**-127, 255: NaN)."""
    s = scales.to(tl.int32)
    half = tl.where(s == 0, 0x40, tl.where(s == 255, 0x7FC0, s << 7))
    return half | (half << 16)


@triton.jit
def fma8_bf16_tile(wq, ws, BN: tl.constexpr, BK: tl.constexpr):
    """fma8 words ``[BN, BK/8]`` and their E8M0 scales ``[BN, BK/32]`` -> bf16 ``[BN, BK]``, natural K order."""
    pair = e8m0_bf16_pair(ws)
    # Each scale serves four words; stacking copies innermost keeps them in the word's thread.
    per_word = tl.join(tl.join(pair, pair), tl.join(pair, pair)).reshape(BN, BK // 8)
    e = tl.inline_asm_elementwise(
        _ASM, "=h,=h,=h,=h,=h,=h,=h,=h,r,r", [wq, per_word],
        dtype=(tl.bfloat16,) * 8, is_pure=True, pack=1,
    )
    # Nested joins stack along a new last axis: pairing j with j+4 innermost and j with j+2
    # next makes the flattened index 4*b2 + 2*b1 + b0 = j (as in ``_tile.dequant_tile``).
    v = tl.join(
        tl.join(tl.join(e[0], e[4]), tl.join(e[2], e[6])),
        tl.join(tl.join(e[1], e[5]), tl.join(e[3], e[7])),
    )
    return v.reshape(BN, BK)
