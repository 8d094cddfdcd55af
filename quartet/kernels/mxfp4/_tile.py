"""Triton helpers shared by every MXFP4 kernel: decode weight tiles, multiply them.

Weight tiles come in one of two code layouts (``quartet.kernels.mxfp4.layout``):

* "ocp": ``wq`` uint8 ``[BN, BK/2]``, two E2M1 codes a byte, low nibble = even K index;
* "fma8": ``w`` int32 ``[BN, BK/8]``, eight codes a word, bit-permuted so that
  ``fma8_raw`` turns one into an exact fp32 ``value * 2**-126`` with a shift and a mask;
* "fma8t": the same words with the MX blocks tiled (8 rows x 2 blocks contiguous). The
  kernels take ``SWIZZLED`` = 0 ("ocp"), 1 ("fma8") or 2-3 ("fma8t", ``layout.layout_code``) and
  address rows through ``row_starts`` (a row pointer and the row's place in its tile).

Scales are always ``ws`` uint8 ``[BN, BK/32]`` (E8M0). Ways to multiply (``MODE``):

* 0, "dot_scaled": ``tl.dot_scaled`` on an "ocp" tile (on Hopper the compiler upcasts
  to bf16 and uses the tensor cores);
* 1, "dequant_dot": decode here, scale, round to bf16 (exact: every MXFP4 value is a
  bf16 value) and ``tl.dot``;
* on CUDA cores, for "fma8" tiles and few activation rows (decode): ``_decode.py``.

Under ``TRITON_INTERPRET=1`` numpy cannot do bf16 arithmetic, so ``INTERPRET`` paths
keep operands in fp32; results are the same because the products are exact either way.
"""

from __future__ import annotations

import triton
import triton.language as tl

# fp32 bits (22, 23, 24, 31) = (m, e0, e1, s); as signed int32 so no literal leaves int32.
_F32_PATTERN = tl.constexpr(-2118123520)  # 0x81C00000
_M_E0 = tl.constexpr(12582912)  # 0x00C00000
_E1 = tl.constexpr(16777216)  # 0x01000000
_SIGN = tl.constexpr(-2147483648)  # 0x80000000
# x is pre-scaled by 2**64 so that (value * 2**-126) * x is a normal fp32 for any |x| in
# [2**-63, 2**63]: the products stay exact, and the block sum is scaled back by 2**62.
X_PRESCALE = tl.constexpr(2.0**64)
SUM_RESCALE = tl.constexpr(2.0**62)
RAW_TO_VALUE = tl.constexpr(2.0**126)


@triton.jit
def cast_out(x, dtype: tl.constexpr, INTERPRET: tl.constexpr):
    """fp32 -> ``dtype``, rounding to nearest even as the GPU does. The interpreter's own
    fp32 -> bf16 truncates and flushes subnormals, so there the bf16 bits are built here."""
    if INTERPRET and dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return x.to(dtype)


@triton.jit
def e2m1_to_f32(codes):
    """E2M1 codes (uint8, 0..15) -> fp32.

    The code's three magnitude bits, placed at fp16 bits 11..9, read as an fp16 whose
    exponent field is E2M1's exponent and whose top mantissa bit is E2M1's mantissa;
    E2M1's exponent bias is 1 and fp16's 15, so multiplying by 2**14 gives the value,
    the subnormal code 1 (0.5) included. The sign bit moves from bit 3 to bit 15.
    """
    bits = ((codes & 7).to(tl.uint16) << 9) | ((codes & 8).to(tl.uint16) << 12)
    return bits.to(tl.float16, bitcast=True).to(tl.float32) * 16384.0


@triton.jit
def e8m0_to_f32(scales):
    """E8M0 bytes -> fp32 2**(s-127), built from bits: byte 0 is the subnormal 2**-127, 255 is NaN."""
    bits = scales.to(tl.int32) << 23
    bits = tl.where(scales == 0, 0x400000, bits)
    bits = tl.where(scales == 255, 0x7FC00000, bits)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def fma8_raw(w, J: tl.constexpr):
    """Element ``J`` of int32 "fma8" words as the fp32 ``value * 2**-126`` (exact; see layout.py)."""
    if J == 0:
        r = (w << 22) & _F32_PATTERN
    elif J == 1:
        r = (w << 19) & _F32_PATTERN
    elif J == 2:
        r = (w << 16) & _F32_PATTERN
    elif J == 3:
        r = (w << 6) & _F32_PATTERN
    elif J == 4:
        r = (w << 3) & _F32_PATTERN
    elif J == 5:
        r = w & _F32_PATTERN
    elif J == 6:
        r = ((w << 12) & _M_E0) | ((w << 11) & _E1) | ((w << 17) & _SIGN)
    else:
        # Arithmetic right shifts drag the sign bit down, but the masks keep none of it.
        r = ((w >> 4) & _M_E0) | ((w >> 5) & _E1) | ((w << 1) & _SIGN)
    return r.to(tl.float32, bitcast=True)


@triton.jit
def dequant_tile(wq, ws, BN: tl.constexpr, BK: tl.constexpr, SWIZZLED: tl.constexpr):
    """A code tile and its ``[BN, BK/32]`` scales -> fp32 ``[BN, BK]`` in natural K order."""
    if SWIZZLED:
        # Nested joins stack along a new last axis; pairing j with j+4 innermost and j with
        # j+2 next makes the flattened index 4*b2 + 2*b1 + b0 = j, the natural order.
        v = tl.join(
            tl.join(tl.join(fma8_raw(wq, 0), fma8_raw(wq, 4)), tl.join(fma8_raw(wq, 2), fma8_raw(wq, 6))),
            tl.join(tl.join(fma8_raw(wq, 1), fma8_raw(wq, 5)), tl.join(fma8_raw(wq, 3), fma8_raw(wq, 7))),
        )
        values = (v * RAW_TO_VALUE).reshape(BN, BK // 32, 32)
    else:
        codes = tl.join(wq & 0xF, wq >> 4).reshape(BN, BK)
        values = e2m1_to_f32(codes).reshape(BN, BK // 32, 32)
    return (values * e8m0_to_f32(ws)[:, :, None]).reshape(BN, BK)


@triton.jit
def mx_dot(acc, wq, ws, xt, BN: tl.constexpr, BK: tl.constexpr, MODE: tl.constexpr, SWIZZLED: tl.constexpr,
           INTERPRET: tl.constexpr):
    """``acc[BN, BM] += dequant(wq, ws)[BN, BK] @ xt[BK, BM]`` with fp32 accumulation."""
    if MODE == 0:
        tl.static_assert(not SWIZZLED, "dot_scaled reads the ocp layout")
        acc = tl.dot_scaled(wq, ws, "e2m1", xt.to(tl.bfloat16), None, "bf16", acc)
    else:
        w = dequant_tile(wq, ws, BN, BK, SWIZZLED)
        if INTERPRET:
            acc = tl.dot(w, xt.to(tl.float32), acc)
        else:
            acc = tl.dot(w.to(tl.bfloat16), xt.to(tl.bfloat16), acc)
    return acc


@triton.jit
def row_starts(wq_ptr, ws_ptr, rows, KP_BLOCKS, SWIZZLED: tl.constexpr):
    """``[BN, 1]`` pointers to weight rows ``rows`` (``[BN]``; in a stack, ``e * N + n``): the first code
    (byte or word) and scale of each row, and the row's place in its tile of 8 (0 unless "fma8t").
    In "fma8t" (``layout.py``) a row's K offsets are ``k_words`` / ``k_scales`` from these."""
    r = rows.to(tl.int64)
    if SWIZZLED >= 2:
        tile = (r // 8) * 8
        r8 = (rows % 8)[:, None]
        q = wq_ptr + (tile * (KP_BLOCKS * 4))[:, None] + r8 * 8
        s = ws_ptr + (tile * KP_BLOCKS)[:, None] + r8 * 2
    else:
        r8 = (r * 0)[:, None]
        q = wq_ptr + (r * (KP_BLOCKS * (4 if SWIZZLED else 16)))[:, None]
        s = ws_ptr + (r * KP_BLOCKS)[:, None]
    return q, s, r8


@triton.jit
def k_words(r8, kq, KP_BLOCKS, SWIZZLED: tl.constexpr):
    """``[BN, BKW]`` offsets from ``row_starts``' code pointers of the row's code words (bytes) ``kq``.
    "fma8t": groups (g = kq // 8) sit 64 words apart, rows 8 words apart in a group, 4 in a last
    group of one block."""
    if SWIZZLED == 3:  # whole groups: the same offsets for every row
        offs = (kq + (kq // 8) * 56)[None, :]
        offs = tl.max_contiguous(tl.multiple_of(offs, [1, 4]), [1, 4])
    elif SWIZZLED == 2:
        g = kq // 8
        adj = (tl.minimum(KP_BLOCKS - g * 2, 2) - 2) * 4
        offs = (kq + g * 56)[None, :] + r8 * adj[None, :]
        # A block's four words stay contiguous and start at a multiple of 4: one 16-byte load.
        offs = tl.max_contiguous(tl.multiple_of(offs, [1, 4]), [1, 4])
    else:
        offs = kq[None, :]
    return offs


@triton.jit
def k_scales(r8, ks, KP_BLOCKS, SWIZZLED: tl.constexpr):
    """``[BN, BKS]`` offsets from ``row_starts``' scale pointers of the row's blocks ``ks``."""
    if SWIZZLED == 3:
        offs = (ks + (ks // 2) * 14)[None, :]
    elif SWIZZLED == 2:
        g = ks // 2
        offs = (ks + g * 14)[None, :] + r8 * (tl.minimum(KP_BLOCKS - g * 2, 2) - 2)[None, :]
    else:
        offs = ks[None, :]
    return offs


@triton.jit
def load_codes(wq_rows, ws_rows, r8, n_ok, t, KP_BLOCKS, BK: tl.constexpr, EVEN_K: tl.constexpr,
               SWIZZLED: tl.constexpr):
    """K tile ``t`` of the codes (bytes or fma8 words) and scales of ``row_starts``' rows."""
    per_word: tl.constexpr = 8 if SWIZZLED else 2
    kq = t * (BK // per_word) + tl.arange(0, BK // per_word)
    ks = t * (BK // 32) + tl.arange(0, BK // 32)
    q_offs = k_words(r8, kq, KP_BLOCKS, SWIZZLED)
    s_offs = k_scales(r8, ks, KP_BLOCKS, SWIZZLED)
    if EVEN_K:
        wq = tl.load(wq_rows + q_offs, mask=n_ok[:, None], other=0)
        ws = tl.load(ws_rows + s_offs, mask=n_ok[:, None], other=0)
    else:
        wq = tl.load(wq_rows + q_offs, mask=n_ok[:, None] & (kq < KP_BLOCKS * (32 // per_word))[None, :],
                     other=0)
        ws = tl.load(ws_rows + s_offs, mask=n_ok[:, None] & (ks < KP_BLOCKS)[None, :], other=0)
    return wq, ws


@triton.jit
def mx_k_loop(
    acc, x_rows, m_ok, wq_rows, ws_rows, r8, n_ok, t0, t1, K, KP_BLOCKS,
    BN: tl.constexpr, BK: tl.constexpr, EVEN_K: tl.constexpr, MODE: tl.constexpr, SWIZZLED: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """Run K tiles ``[t0, t1)``: ``acc[BN, BM] += W[rows, k] @ X[k, cols]`` on the tensor cores.

    ``x_rows``: ``[BM]`` pointers to the first element of each activation row;
    ``wq_rows`` / ``ws_rows`` / ``r8``: each weight row's codes / scales (``row_starts``).
    ``EVEN_K`` (K a multiple of BK, no padding) drops the K masks so loads vectorize.
    """
    for t in range(t0, t1):
        wq, ws = load_codes(wq_rows, ws_rows, r8, n_ok, t, KP_BLOCKS, BK, EVEN_K, SWIZZLED)
        kx = t * BK + tl.arange(0, BK)
        if EVEN_K:
            xt = tl.load(x_rows[None, :] + kx[:, None], mask=m_ok[None, :], other=0.0)
        else:
            xt = tl.load(x_rows[None, :] + kx[:, None], mask=m_ok[None, :] & (kx < K)[:, None], other=0.0)
        acc = mx_dot(acc, wq, ws, xt, BN, BK, MODE, SWIZZLED, INTERPRET)
    return acc


@triton.jit
def mx_k_loop_pair(
    acc_a, acc_b, x_rows, m_ok, qa_rows, sa_rows, qb_rows, sb_rows, r8, n_ok, t0, t1, K, KP_BLOCKS,
    BN: tl.constexpr, BK: tl.constexpr, MODE: tl.constexpr, SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr,
):
    """Like ``mx_k_loop`` for two weights that share the activation tile (gate and up projections)."""
    for t in range(t0, t1):
        kx = t * BK + tl.arange(0, BK)
        xt = tl.load(x_rows[None, :] + kx[:, None], mask=m_ok[None, :] & (kx < K)[:, None], other=0.0)
        qa, sa = load_codes(qa_rows, sa_rows, r8, n_ok, t, KP_BLOCKS, BK, False, SWIZZLED)
        qb, sb = load_codes(qb_rows, sb_rows, r8, n_ok, t, KP_BLOCKS, BK, False, SWIZZLED)
        acc_a = mx_dot(acc_a, qa, sa, xt, BN, BK, MODE, SWIZZLED, INTERPRET)
        acc_b = mx_dot(acc_b, qb, sb, xt, BN, BK, MODE, SWIZZLED, INTERPRET)
    return acc_a, acc_b
