"""Block-wise CUDA-core helpers for decode on "fma8" weights: one MX block per thread.

A weight tile is ``[BN, KB, 4]`` int32: ``BN`` rows, ``KB`` MX blocks of 32 weights, the
block's four code words innermost. Every thread then loads whole blocks, 16 contiguous
bytes each (one vector load, coalesced to 512 B a warp when the tile's threads run along
K), and one scale byte per block. The first version read ``[BN, KW]`` words with a mask
that varied along K, which the compiler split into 4-byte loads, plus a scale byte per
word: five L1 requests per 16 bytes of codes, and the kernel was L1-bound.

Activations are read once per program as ``[KB, 4, 8]`` (8 consecutive K values a word,
16-byte vectors for bf16) and split in registers into the eight ``[KB, 4]`` tensors of
"element j of each word" that the fma8 decode pairs them with (``_tile.fma8_raw``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from quartet.kernels.mxfp4._tile import SUM_RESCALE, X_PRESCALE, e8m0_to_f32, fma8_raw, k_scales, k_words, row_starts


@triton.jit
def load_x_blocks(x_row, b, K, KB: tl.constexpr, EVEN_K: tl.constexpr):
    """Activations of MX blocks ``b`` ([KB] block indices) of one row, in fp32 pre-scaled by 2**64.

    Returns the tuple ``(x0, ..., x7)``, each ``[KB, 4]``: ``xj[i, w] = x[32 * b[i] + 8 * w + j]``, zero past K.
    ``EVEN_K`` (K a multiple of 8) masks whole words so the loads stay vectors.
    """
    w4 = tl.arange(0, 4)
    word_k = b[:, None, None] * 32 + w4[None, :, None] * 8
    k = word_k + tl.arange(0, 8)[None, None, :]
    if EVEN_K:
        v = tl.load(x_row + k, mask=word_k < K, other=0.0)
    else:
        v = tl.load(x_row + k, mask=k < K, other=0.0)
    v = v.to(tl.float32) * X_PRESCALE
    # Element j = 4 * j2 + 2 * j1 + j0 of a word; each split peels the lowest remaining bit.
    even, odd = tl.split(v.reshape(KB, 4, 2, 2, 2))
    e0, e1 = tl.split(even)
    o0, o1 = tl.split(odd)
    x0, x4 = tl.split(e0)
    x2, x6 = tl.split(e1)
    x1, x5 = tl.split(o0)
    x3, x7 = tl.split(o1)
    return (x0, x1, x2, x3, x4, x5, x6, x7)


@triton.jit
def load_word_tile(w_ptr, ws_ptr, rows, n_ok, b0, KP_BLOCKS, KB: tl.constexpr, SWIZZLED: tl.constexpr):
    """Codes ``[BN, KB, 4]`` int32 and scales ``[BN, KB]`` uint8 of weight rows ``rows``, blocks ``b0 .. b0 + KB``.

    The mask is constant over a block's four words, so each thread's block is one 16-byte load.
    ``SWIZZLED``: ``layout.layout_code`` of the weight, 1 ("fma8") or 2-3 ("fma8t", rows counted
    from a multiple of 8); rows are addressed through ``_tile.row_starts``.
    """
    b = b0 + tl.arange(0, KB)
    ok = n_ok[:, None] & (b < KP_BLOCKS)[None, :]
    # Loaded as [BN, 4 * KB] and reshaped: a 3-D pointer tensor let Triton 3.6 spread a warp
    # over 32 rows instead of along K. ``c // 4 < KP_BLOCKS`` is constant over a block's four
    # words, so the load stays one 16-byte vector a block.
    c = b0 * 4 + tl.arange(0, 4 * KB)
    ok_w = n_ok[:, None] & (c // 4 < KP_BLOCKS)[None, :]
    q_rows, s_rows, r8 = row_starts(w_ptr, ws_ptr, rows, KP_BLOCKS, SWIZZLED)
    w = tl.load(q_rows + k_words(r8, c, KP_BLOCKS, SWIZZLED), mask=ok_w, other=0, eviction_policy="evict_first")
    w = w.reshape(rows.shape[0], KB, 4)
    # Declared non-contiguous so the compiler loads scales one byte a thread, in the codes'
    # own layout: a vectorized scale load would send every block sum through shared memory.
    offs = tl.max_contiguous(k_scales(r8, b, KP_BLOCKS, SWIZZLED), [1, 1])
    s = tl.load(s_rows + offs, mask=ok, other=0, eviction_policy="evict_first")
    return w, s


@triton.jit
def block_dot(w, s, xs):
    """``[BN, KB]`` fp32: each block's 32 products with activations ``xs`` (from ``load_x_blocks``),
    times the block's scale.

    Per weight one FMA and the fma8 decode (a shift and a mask for six of eight); the
    block's 2**62 rescale and its E8M0 scale are applied once per 32 weights, rescale
    first so the product cannot overflow fp32 for scale bytes above 192.
    """
    p = fma8_raw(w, 0) * xs[0][None, :, :]
    p += fma8_raw(w, 1) * xs[1][None, :, :]
    p += fma8_raw(w, 2) * xs[2][None, :, :]
    p += fma8_raw(w, 3) * xs[3][None, :, :]
    p += fma8_raw(w, 4) * xs[4][None, :, :]
    p += fma8_raw(w, 5) * xs[5][None, :, :]
    p += fma8_raw(w, 6) * xs[6][None, :, :]
    p += fma8_raw(w, 7) * xs[7][None, :, :]
    return tl.sum(p, axis=2) * SUM_RESCALE * e8m0_to_f32(s)
