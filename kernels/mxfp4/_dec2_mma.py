"""Decode on the tensor cores at one activation row: two "fma8" weights an instruction, ``mma.sync``
as the multiply-add.

The CUDA-core decode (``_decode.py``) spends about 5.9 instructions a weight (23 integer ops
per 8 weights, one FFMA each, plus block sums) and is issue-bound (docs/PERFORMANCE.md, runs
D and E). Here a word of 8 codes becomes four bf16 pairs with about 14 integer ops and 8
``mul.rn.bf16x2`` (by 2**126, then by the block's E8M0 scale: both exact, as in
``_bf16x2.py``), and the multiply-adds of a word for two rows go to two ``mma.m16n8k16``:
about 3 instructions a weight.

How one ``mma.sync`` serves a GEMV. Lane ``l`` holds the A fragment of rows ``l // 4`` and
``l // 4 + 8`` at four k-slots chosen by ``l % 4``, and the B fragment of column ``l // 4`` at
the same k-slots. A dot product does not care which K index a k-slot carries, so lane ``l``
fills its A slots with weights of its own rows at MX block ``b + l % 4`` and its B slots with
the activations of that block. Lanes with the same ``l % 4`` then hold the same K positions,
every B column is the activation vector, and ``D[g, n]`` is row ``g``'s dot over the four
blocks of its quad, plus ``C[g, n]``: each lane passes its running sum as C, so the tensor
cores accumulate across groups in fp32 and all four lanes of a quad keep the same sum.

That mapping must not depend on how Triton lays tensors out (Triton 3.6 put a ``[rows,
blocks]`` tile 32 rows a warp), so the PTX computes it from ``%tid.x`` and does its own
loads: the Triton tensors it takes and returns hold one element a thread, the running sums
and the row each thread owns, and the kernels store by that row.

Precision: weights enter the tensor cores as exact bf16 (``value * scale``), activations as
bf16, products are exact and the sums fp32 (the tensor cores' accumulation, as in
``dequant_dot`` and cuBLAS). Exact weights need scale bytes 2..253; below that a weight is a
bf16 subnormal, above it overflows, as in every bf16 path. The CUDA-core "fma" path keeps
the wider contract (README). The interpreter cannot run PTX: there the same group sums come
from the fp32 decode of ``_decode.py`` for the same rows, so the tests cover the tiling, the
masks and the epilogues on the CPU and the PTX on CUDA.
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels.mxfp4._decode import block_dot, load_word_tile, load_x_blocks

_MMA = ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d}0, {d}1, {d}2, {d}3}}, {{{}, {}, {}, {}}}, "
        "{{{}, {}}}, {{{d}0, {d}1, {d}2, {d}3}};")


def _decode(word: str, out: str, scale: str) -> list[str]:
    """fma8 word -> bf16 pairs ``out0..out3`` = elements (0, 3), (1, 4), (2, 5), (6, 7), times ``scale``."""
    p = [f"{out}{i}" for i in range(4)]
    return [
        f"shl.b32 {p[0]}, {word}, 6;", f"and.b32 {p[0]}, {p[0]}, 0x81C081C0;",
        f"shl.b32 {p[1]}, {word}, 3;", f"and.b32 {p[1]}, {p[1]}, 0x81C081C0;",
        f"and.b32 {p[2]}, {word}, 0x81C081C0;",
        f"shr.u32 u, {word}, 4;", "and.b32 u, u, 0x00C000C0;",
        f"shr.u32 v, {word}, 5;", "and.b32 v, v, 0x01000100;",
        "or.b32 u, u, v;",
        f"shl.b32 v, {word}, 1;", "and.b32 v, v, 0x80008000;",
        f"or.b32 {p[3]}, u, v;",
        *[f"mul.rn.bf16x2 {q}, {q}, c;" for q in p],
        *[f"mul.rn.bf16x2 {q}, {q}, {scale};" for q in p],
    ]


def _load_rows(r: int, side: str, base: str, scales: str, valid: str) -> list[str]:
    """Row set ``r`` of one tile (``side`` l or h): its block's 4 words and scale pair, zero when masked."""
    w, s = f"w{side}{r}_", f"s{side}{r}"
    return [
        "mov.b32 gr, g;" if r == 0 else f"mad.lo.s32 gr, nw8, {r}, g;",
        f"setp.lt.s32 pr, gr, {valid};", "and.pred pr, pr, pb;",
        f"mul.wide.s32 o, gr, rs;", f"add.s64 a, {base}, o;", "add.s64 a, a, ob;",
        *[f"mov.b32 {w}{i}, 0;" for i in range(4)],
        f"@pr ld.global.v4.b32 {{{w}0, {w}1, {w}2, {w}3}}, [a];",
        "mad.lo.s32 u, gr, kp, blk;", "cvt.s64.s32 o, u;", f"add.s64 a, {scales}, o;",
        "mov.b16 sb, 0;", "@pr ld.global.b8 sb, [a];", "cvt.u32.u16 u, sb;",
        # E8M0 -> bf16 2**(s-127) in both halves: byte 0 is the subnormal 2**-127, 255 is NaN.
        "shl.b32 v, u, 7;", "setp.eq.u32 pz, u, 0;", "selp.b32 v, 0x40, v, pz;",
        "setp.eq.u32 pz, u, 255;", "selp.b32 v, 0x7FC0, v, pz;", f"prmt.b32 {s}, v, v, 0x1010;",
    ]


def group_asm(rpt: int) -> str:
    """PTX of one group (4 MX blocks) for ``rpt`` row sets a thread. Operands: outputs ``$0 ..
    $(2 rpt - 1)`` the running sums (fp32 bits: set r's lo row at 2r, hi row at 2r + 1), ``$(2 rpt)``
    the thread's set-0 row; inputs the sums again, then the lo / hi code and scale tile bases,
    the activation row (bf16, zero-padded to whole blocks), lo / hi valid rows, first block, blocks a row."""
    n_out = 2 * rpt + 1
    acc = [f"${n_out + i}" for i in range(2 * rpt)]
    wl, wh, sl, sh, xp, nl, nh, b0, kpb = (f"${n_out + 2 * rpt + i}" for i in range(9))
    regs = [f"wl{r}_{i}" for r in range(rpt) for i in range(4)] + [f"wh{r}_{i}" for r in range(rpt) for i in range(4)]
    lines = ["{", ".reg .pred pb, pr, pz;", ".reg .b16 sb;", ".reg .b64 a, o, ob;",
             ".reg .b32 t, g, c, blk, gr, nw8, rs, kp, u, v, l0, l1, l2, l3, h0, h1, h2, h3;",
             ".reg .b32 " + ", ".join(f"x{i}" for i in range(16)) + ";",
             ".reg .b32 " + ", ".join(regs + [f"s{sd}{r}" for sd in "lh" for r in range(rpt)]) + ";",
             ".reg .f32 " + ", ".join(f"d{r}_{i}" for r in range(rpt) for i in range(4)) + ";",
             # Thread -> (row g, block c): 8 rows and 4 blocks a warp, warps stacked along rows.
             "mov.u32 t, %tid.x;", "and.b32 c, t, 3;", "shr.u32 g, t, 5;", "shl.b32 g, g, 3;",
             "bfe.u32 u, t, 2, 3;", "add.s32 g, g, u;", "mov.u32 nw8, %ntid.x;", "shr.u32 nw8, nw8, 2;",
             f"mov.b32 kp, {kpb};", "shl.b32 rs, kp, 4;", f"add.s32 blk, {b0}, c;",
             "setp.lt.s32 pb, blk, kp;", "mul.wide.s32 ob, blk, 16;", "mov.b32 c, 0x7E807E80;",
             # The block's 32 activations: 16 words, value 2i in the low half of word i.
             "mul.wide.s32 o, blk, 64;", f"add.s64 a, {xp}, o;"]
    lines += [f"mov.b32 x{i}, 0;" for i in range(16)]
    lines += [f"@pb ld.global.v4.b32 {{x{4 * q}, x{4 * q + 1}, x{4 * q + 2}, x{4 * q + 3}}}, [a+{16 * q}];"
              for q in range(4)]
    for q in range(4):  # word q's values (2i, 2i+1) -> the decode's pairs (0, 3), (1, 4), (2, 5), (6, 7)
        n = [f"x{4 * q + i}" for i in range(4)]
        lines += [f"prmt.b32 u, {n[0]}, {n[1]}, 0x7610;", f"prmt.b32 v, {n[0]}, {n[2]}, 0x5432;",
                  f"prmt.b32 {n[2]}, {n[1]}, {n[2]}, 0x7610;", f"mov.b32 {n[0]}, u;", f"mov.b32 {n[1]}, v;"]
    for r in range(rpt):
        lines += _load_rows(r, "l", wl, sl, nl) + _load_rows(r, "h", wh, sh, nh)
        lines += [f"mov.b32 d{r}_0, {acc[2 * r]};", f"mov.b32 d{r}_1, {acc[2 * r]};",
                  f"mov.b32 d{r}_2, {acc[2 * r + 1]};", f"mov.b32 d{r}_3, {acc[2 * r + 1]};"]
    for q in range(4):
        xq = [f"x{4 * q + i}" for i in range(4)]
        for r in range(rpt):
            lines += _decode(f"wl{r}_{q}", "l", f"sl{r}") + _decode(f"wh{r}_{q}", "h", f"sh{r}")
            lines += [_MMA.format("l0", "h0", "l1", "h1", xq[0], xq[1], d=f"d{r}_"),
                      _MMA.format("l2", "h2", "l3", "h3", xq[2], xq[3], d=f"d{r}_")]
    for r in range(rpt):
        lines += [f"mov.b32 ${2 * r}, d{r}_0;", f"mov.b32 ${2 * r + 1}, d{r}_2;"]
    lines += [f"mov.b32 ${2 * rpt}, g;", "}"]
    return "\n".join(lines)


_ASM1 = tl.constexpr(group_asm(1))
_ASM2 = tl.constexpr(group_asm(2))
_CON1 = tl.constexpr(",".join(["=r"] * 3 + ["r"] * 2 + ["l"] * 5 + ["r"] * 4))
_CON2 = tl.constexpr(",".join(["=r"] * 5 + ["r"] * 4 + ["l"] * 5 + ["r"] * 4))


@triton.jit
def thread_rows(NW: tl.constexpr):
    """Set-0 row of each thread's element (``[32 * NW]``), as the PTX maps them (interpreter)."""
    i = tl.arange(0, 32 * NW)
    return (i % 32) // 4 + 8 * (i // 32)


@triton.jit
def _quad_sum_ref(acc, w_base, s_base, rows, n_valid, b0, KP_BLOCKS, xs):
    w, s = load_word_tile(w_base, s_base, rows, rows < n_valid, b0, KP_BLOCKS, 4)
    return acc + tl.sum(block_dot(w, s, xs), axis=1)


@triton.jit
def group_mma(accs, wl, wh, sl, sh, x_row, nl, nh, b0, K, KP_BLOCKS,
              NW: tl.constexpr, RPT: tl.constexpr, INTERPRET: tl.constexpr):
    """Add the group of MX blocks ``b0 .. b0 + 3`` to each thread's running sums ``accs`` (a tuple of
    ``2 * RPT`` fp32 ``[32 * NW]``: set r's lo row, hi row). ``wl`` / ``wh``: int32 code pointers at
    the lo / hi tile's first row (``sl`` / ``sh`` their scales), ``nl`` / ``nh`` rows valid in
    each, ``x_row`` the bf16 activations (zero-padded to ``KP_BLOCKS * 32``). Returns the new
    sums and the set-0 row of each element (set r adds ``8 * NW * r``)."""
    if INTERPRET:
        g = thread_rows(NW)
        xs = load_x_blocks(x_row, b0 + tl.arange(0, 4), K, 4, False)
        lo0 = _quad_sum_ref(accs[0], wl, sl, g, nl, b0, KP_BLOCKS, xs)
        hi0 = _quad_sum_ref(accs[1], wh, sh, g, nh, b0, KP_BLOCKS, xs)
        if RPT == 1:
            out = (lo0, hi0)
        else:
            lo1 = _quad_sum_ref(accs[2], wl, sl, g + 8 * NW, nl, b0, KP_BLOCKS, xs)
            hi1 = _quad_sum_ref(accs[3], wh, sh, g + 8 * NW, nh, b0, KP_BLOCKS, xs)
            out = (lo0, hi0, lo1, hi1)
        return out, g
    else:
        if RPT == 1:
            r = tl.inline_asm_elementwise(
                _ASM1, _CON1,
                [accs[0].to(tl.int32, bitcast=True), accs[1].to(tl.int32, bitcast=True),
                 wl.to(tl.int64), wh.to(tl.int64), sl.to(tl.int64), sh.to(tl.int64), x_row.to(tl.int64),
                 nl, nh, b0, KP_BLOCKS],
                dtype=(tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)
            out = (r[0].to(tl.float32, bitcast=True), r[1].to(tl.float32, bitcast=True))
            return out, r[2]
        else:
            r = tl.inline_asm_elementwise(
                _ASM2, _CON2,
                [accs[0].to(tl.int32, bitcast=True), accs[1].to(tl.int32, bitcast=True),
                 accs[2].to(tl.int32, bitcast=True), accs[3].to(tl.int32, bitcast=True),
                 wl.to(tl.int64), wh.to(tl.int64), sl.to(tl.int64), sh.to(tl.int64), x_row.to(tl.int64),
                 nl, nh, b0, KP_BLOCKS],
                dtype=(tl.int32, tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)
            out = (r[0].to(tl.float32, bitcast=True), r[1].to(tl.float32, bitcast=True),
                   r[2].to(tl.float32, bitcast=True), r[3].to(tl.float32, bitcast=True))
            return out, r[4]
