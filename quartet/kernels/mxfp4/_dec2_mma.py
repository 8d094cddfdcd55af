"""Decode on the tensor cores at one activation row: two "fma8" weights an instruction, ``mma.sync``
as the multiply-add.

The CUDA-core decode (``_decode.py``) issues about 5.9 instructions a weight (23 integer ops per
8 weights, one FFMA each, plus block sums). Here a word of 8 codes becomes four bf16 pairs of
exact E2M1 values with about 14 integer ops and 4 ``mul.rn.bf16x2`` (by 2**126, as in
``_bf16x2.py``), and the multiply-adds of a word for two rows go to two ``mma.m16n8k16``; the
block's E8M0 scale multiplies fp32 sums (``compute_asm``). On the H100 that made the large GEMV
faster but not the 2880-wide MoE layers, which wait on memory, not on issue (docs/perf-log/kernels-mxfp4.md,
runs F and I).

How one ``mma.sync`` serves a GEMV. Lane ``l`` holds the A fragment of rows ``l // 4`` and
``l // 4 + 8`` at four k-slots chosen by ``l % 4``, and the B fragment of column ``l // 4`` at
the same k-slots. A dot product does not care which K index a k-slot carries, so lane ``l``
fills its A slots with weights of its own rows at MX block ``b + l % 4`` and its B slots with
the activations of that block. Lanes with the same ``l % 4`` then hold the same K positions.
B column ``2j`` carries only quad position ``j``'s activations (the other B registers are
zero), so ``D[g, 2j]``, held by the lanes with ``l % 4 == j``, is row ``g``'s dot over that
lane's own block: the lane scales it by its block's scale in fp32 and keeps a running sum over
its blocks, and ``quad_sum`` adds a quad's four sums at the end of a K slice. Each word's two
``mma``s start a fresh chain, so the four chains of a group and successive groups overlap their
latencies.

That mapping must not depend on how Triton lays tensors out (Triton 3.6 put a ``[rows,
blocks]`` tile 32 rows a warp), so the PTX computes it from ``%tid.x`` and does its own loads
(``group_load``, issued a group or two ahead of ``group_math``): the Triton tensors it takes
and returns hold one element a thread, and the kernels store by the row the PTX returns.

Precision: weights enter the tensor cores as exact E2M1 values in bf16, activations as bf16,
products are exact and the sums fp32 (the tensor cores' accumulation, as in ``dequant_dot`` and
cuBLAS); each block's sum is scaled by its E8M0 scale in fp32, exact until the fp32 range ends,
so every scale byte is served (before session 6 the scaled weights were bf16, exact only for
scale bytes 2..253). The interpreter cannot run PTX: there the same group sums come
from the fp32 decode of ``_decode.py`` for the same rows, so the tests cover the tiling, the
masks and the epilogues on the CPU and the PTX on CUDA.
"""

from __future__ import annotations

import triton
import triton.language as tl

from quartet.kernels.mxfp4._decode import block_dot, load_word_tile, load_x_blocks

_MMA = ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d}0, {d}1, {d}2, {d}3}}, {{{}, {}, {}, {}}}, "
        "{{{}, {}}}, {{{d}0, {d}1, {d}2, {d}3}};")


def _decode(word: str, out: str) -> list[str]:
    """fma8 word -> bf16 pairs ``out0..out3`` = elements (0, 3), (1, 4), (2, 5), (6, 7), exact E2M1 values
    (the masks leave ``value * 2**-126``, a bf16 subnormal for the smallest; ``c`` = 2**126 makes it exact)."""
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
    ]


def _load_rows(r: int, side: str, base: str, scales: str, valid: str, out_w: list[str], out_s: str,
               hint: str, tiled: bool) -> list[str]:
    """Row set ``r`` of one tile (``side`` l or h): its block's 4 words and scale byte, zero when masked.
    Row-major fma8: the block is at row * kp + blk. fma8t (``layout.tile_slot``): at
    (row / 8) * 8 kp + (row % 8) * width + tg, with the lane's group width and tg set in the prologue."""
    if tiled:
        where = ["and.b32 q, gr, 7;", "mad.lo.s32 q, q, tw, tg;", "shr.u32 u, gr, 3;", "mad.lo.s32 u, u, rs, q;",
                 "mul.wide.s32 o, u, 16;", f"add.s64 a, {base}, o;"]
    else:
        where = ["mul.wide.s32 o, gr, rs;", f"add.s64 a, {base}, o;", "add.s64 a, a, ob;",
                 "mad.lo.s32 u, gr, kp, blk;"]
    return [
        "mov.b32 gr, g;" if r == 0 else f"mad.lo.s32 gr, nw8, {r}, g;",
        f"setp.lt.s32 pr, gr, {valid};", "and.pred pr, pr, pb;",
        *where,
        *[f"mov.b32 {w}, 0;" for w in out_w],
        f"@pr ld.global{hint}.v4.b32 {{{', '.join(out_w)}}}, [a];",
        "cvt.s64.s32 o, u;", f"add.s64 a, {scales}, o;",
        "mov.b16 sb, 0;", f"@pr ld.global{hint}.b8 sb, [a];", f"cvt.u32.u16 {out_s}, sb;",
    ]


# Weight loads with ``HINT``: through the read-only path, not kept in L1, and each L2 miss fetching
# 256 bytes, the rest of the row's slice for the next groups (a K slice is 192 to 512 bytes a row).
_HINTS = ("", ".nc.L1::no_allocate.L2::256B")


def load_asm(rpt: int, hint: int = 0, tiled: bool = False) -> str:
    """PTX: one thread's loads of one group (4 MX blocks). Outputs: ``$0..$15`` the activation words
    of its block (value 2i in the low half of word i; the row is zero-padded to whole blocks),
    then per row set r the lo words, hi words, lo scale byte, hi scale byte (10 operands), then
    the thread's set-0 row. Inputs: the lo / hi code and scale tile bases, the activation row,
    lo / hi valid rows, the group's first block, blocks a row. ``tiled``: the codes and scales are
    "fma8t" (``layout.py``), the tile bases at a multiple of 8 rows."""
    n_out = 16 + 10 * rpt + 1
    # Input $n_out is a [32 * NW] tensor that only gives the outputs their shape.
    wl, wh, sl, sh, xp, nl, nh, b0, kpb = (f"${n_out + 1 + i}" for i in range(9))
    lines = ["{", ".reg .pred pb, pr;", ".reg .b16 sb;", ".reg .b64 a, o, ob;",
             ".reg .b32 t, g, c, blk, gr, nw8, rs, kp, u, tw, tg, q;",
             # Thread -> (row g, block c): 8 rows and 4 blocks a warp, warps stacked along rows.
             "mov.u32 t, %tid.x;", "and.b32 c, t, 3;", "shr.u32 g, t, 5;", "shl.b32 g, g, 3;",
             "bfe.u32 u, t, 2, 3;", "add.s32 g, g, u;", "mov.u32 nw8, %ntid.x;", "shr.u32 nw8, nw8, 2;",
             f"mov.b32 kp, {kpb};", "shl.b32 rs, kp, 4;", f"add.s32 blk, {b0}, c;",
             "setp.lt.s32 pb, blk, kp;", "mul.wide.s32 ob, blk, 16;",
             "mul.wide.s32 o, blk, 64;", f"add.s64 a, {xp}, o;"]
    if tiled:  # rs: slots a row tile; tg: the lane's group's first slot plus its block in the group (groups of 2:
        # (blk / 2) * 16 + blk % 2); tw: the group's width, 2 or 1 for an odd last block
        lines += ["shl.b32 rs, kp, 3;", "shr.u32 u, blk, 1;", "shl.b32 tg, u, 4;", "and.b32 u, blk, 1;",
                  "add.s32 tg, tg, u;", "and.b32 u, blk, 0xFFFFFFFE;", "sub.s32 tw, kp, u;", "min.s32 tw, tw, 2;"]
    lines += [f"mov.b32 ${i}, 0;" for i in range(16)]
    lines += [f"@pb ld.global.v4.b32 {{${4 * q}, ${4 * q + 1}, ${4 * q + 2}, ${4 * q + 3}}}, [a+{16 * q}];"
              for q in range(4)]
    for r in range(rpt):
        o = 16 + 10 * r
        lines += _load_rows(r, "l", wl, sl, nl, [f"${o + i}" for i in range(4)], f"${o + 8}", _HINTS[hint], tiled)
        lines += _load_rows(r, "h", wh, sh, nh, [f"${o + 4 + i}" for i in range(4)], f"${o + 9}", _HINTS[hint],
                            tiled)
    lines += [f"mov.b32 ${n_out - 1}, g;", "}"]
    return "\n".join(lines)


def _scale_f32(byte: str, out: str) -> list[str]:
    """E8M0 byte -> fp32 2**(s-127): the byte in the exponent field; 0 is the subnormal 2**-127, 255 NaN."""
    return [f"shl.b32 {out}, {byte}, 23;", f"setp.eq.u32 pz, {byte}, 0;", f"selp.b32 {out}, 0x00400000, {out}, pz;",
            f"setp.eq.u32 pz, {byte}, 255;", f"selp.b32 {out}, 0x7FC00000, {out}, pz;"]


def compute_asm(rpt: int) -> str:
    """PTX: one group's decode and ``mma``s. Outputs: the running sums (fp32 bits; set r's lo row at
    2r, hi row at 2r + 1). Inputs: the sums, then ``load_asm``'s 16 activation words and 10 per
    row set.

    The block scale is applied to fp32 sums, not to the weights: B column ``2j`` holds only the
    activations of quad position ``j``'s block (lane ``l`` keeps its B registers when ``l // 4 ==
    2 * (l % 4)`` and zeroes them otherwise), so ``D[g, 2j]``, which lane ``l`` with ``l % 4 == j``
    holds, is row g's sum over its own block. The lane multiplies that by its block's scale in
    fp32: four fewer ``mul.bf16x2`` a word, and the weights enter the tensor cores as exact E2M1
    values whatever the scale (the sums are fp32 and the scaling exact until fp32 range ends).
    Each lane's running sums then cover its own blocks; ``quad_sum`` adds the four lanes at the
    end of a slice. Each word's two ``mma``s start a fresh chain (independent of the other words
    and of earlier groups, so their latencies overlap); the chains are added in fp32."""
    n_out = 2 * rpt
    acc = [f"${n_out + i}" for i in range(2 * rpt)]
    xin = [f"${n_out + 2 * rpt + i}" for i in range(16)]
    rows = [[f"${n_out + 2 * rpt + 16 + 10 * r + i}" for i in range(10)] for r in range(rpt)]
    lines = ["{", ".reg .pred pz;", ".reg .b32 c, u, v, m, l0, l1, l2, l3, h0, h1, h2, h3, sl, sh;",
             ".reg .b32 " + ", ".join(f"x{i}" for i in range(16)) + ";",
             ".reg .f32 fl, fh, z, " + ", ".join(f"d{q}_{i}" for q in range(4) for i in range(4)) + ";",
             "mov.b32 c, 0x7E807E80;", "mov.f32 z, 0f00000000;",
             # m: all ones in the lanes whose B column is their own block's (l / 4 == 2 (l % 4)), else 0
             "mov.u32 u, %tid.x;", "and.b32 v, u, 3;", "shl.b32 v, v, 1;", "bfe.u32 u, u, 2, 3;",
             "setp.eq.u32 pz, u, v;", "selp.b32 m, 0xFFFFFFFF, 0, pz;"]
    for q in range(4):  # word q's values (2i, 2i+1) -> the decode's pairs (0, 3), (1, 4), (2, 5), (6, 7)
        n = xin[4 * q: 4 * q + 4]
        lines += [f"prmt.b32 x{4 * q}, {n[0]}, {n[1]}, 0x7610;", f"prmt.b32 x{4 * q + 1}, {n[0]}, {n[2]}, 0x5432;",
                  f"prmt.b32 x{4 * q + 2}, {n[1]}, {n[2]}, 0x7610;", f"mov.b32 x{4 * q + 3}, {n[3]};"]
    lines += [f"and.b32 x{i}, x{i}, m;" for i in range(16)]
    for r in range(rpt):
        lines += _scale_f32(rows[r][8], "sl") + _scale_f32(rows[r][9], "sh")
        for q in range(4):
            d = f"d{q}_"
            lines += _decode(rows[r][q], "l") + _decode(rows[r][4 + q], "h")
            lines += [_MMA.format("l0", "h0", "l1", "h1", f"x{4 * q}", f"x{4 * q + 1}", d=d).replace(
                          f"{{{d}0, {d}1, {d}2, {d}3}};", "{z, z, z, z};"),
                      _MMA.format("l2", "h2", "l3", "h3", f"x{4 * q + 2}", f"x{4 * q + 3}", d=d)]
        lines += ["add.f32 fl, d0_0, d1_0;", "add.f32 fh, d0_2, d1_2;", "add.f32 fl, fl, d2_0;",
                  "add.f32 fh, fh, d2_2;", "add.f32 fl, fl, d3_0;", "add.f32 fh, fh, d3_2;",
                  f"mov.b32 u, {acc[2 * r]};", f"mov.b32 v, {acc[2 * r + 1]};"]
        lines += ["mov.b32 d0_0, u;", "mov.b32 d0_2, v;", "mov.b32 d1_0, sl;", "mov.b32 d1_2, sh;",
                  "fma.rn.f32 fl, fl, d1_0, d0_0;", "fma.rn.f32 fh, fh, d1_2, d0_2;",
                  f"mov.b32 ${2 * r}, fl;", f"mov.b32 ${2 * r + 1}, fh;"]
    lines.append("}")
    return "\n".join(lines)


# The four lanes of a quad hold one row's sums over their own blocks: a butterfly over the quad
# leaves the row's sum in all four (every lane of the warp runs it: one element a thread).
_QUAD_SUM = tl.constexpr("{\n.reg .f32 a, b;\nmov.b32 a, $1;\nshfl.sync.bfly.b32 b, a, 1, 0x1f, 0xffffffff;\n"
                         "add.f32 a, a, b;\nshfl.sync.bfly.b32 b, a, 2, 0x1f, 0xffffffff;\nadd.f32 a, a, b;\n"
                         "mov.b32 $0, a;\n}")


@triton.jit
def quad_sum(v):
    return tl.inline_asm_elementwise(_QUAD_SUM, "=r,r", [v.to(tl.int32, bitcast=True)], dtype=tl.int32,
                                     is_pure=True, pack=1).to(tl.float32, bitcast=True)


@triton.jit
def pdl_wait(PDL: tl.constexpr):
    """With programmatic dependent launch: wait for the previous kernel of the stream (its writes are
    visible after this), then let the next one launch. Returns an int32 zero the compiler cannot
    see through: the callers add it to the pointers of every read of another kernel's data, so
    that the PTX loads (pure ``inline_asm``, free to move) depend on the wait and stay after it."""
    if PDL:
        return tl.inline_asm_elementwise("griddepcontrol.wait;\ngriddepcontrol.launch_dependents;\nmov.b32 $0, 0;",
                                         "=r", [], dtype=tl.int32, is_pure=False, pack=1)
    else:
        return 0


_LOAD1 = tl.constexpr(load_asm(1))
_LOAD2 = tl.constexpr(load_asm(2))
_LOAD1H = tl.constexpr(load_asm(1, 1))
_LOAD2H = tl.constexpr(load_asm(2, 1))
_LOAD1T = tl.constexpr(load_asm(1, tiled=True))
_LOAD2T = tl.constexpr(load_asm(2, tiled=True))
_LOAD1HT = tl.constexpr(load_asm(1, 1, True))
_LOAD2HT = tl.constexpr(load_asm(2, 1, True))
_LCON1 = tl.constexpr(",".join(["=r"] * 27 + ["r"] + ["l"] * 5 + ["r"] * 4))
_LCON2 = tl.constexpr(",".join(["=r"] * 37 + ["r"] + ["l"] * 5 + ["r"] * 4))
_MATH1 = tl.constexpr(compute_asm(1))
_MATH2 = tl.constexpr(compute_asm(2))
_MCON1 = tl.constexpr(",".join(["=r"] * 2 + ["r"] * (2 + 16 + 10)))
_MCON2 = tl.constexpr(",".join(["=r"] * 4 + ["r"] * (4 + 16 + 20)))


@triton.jit
def thread_rows(NW: tl.constexpr):
    """Set-0 row of each thread's element (``[32 * NW]``), as the PTX maps them (interpreter)."""
    i = tl.arange(0, 32 * NW)
    return (i % 32) // 4 + 8 * (i // 32)


@triton.jit
def _quad_sum_ref(acc, w_base, s_base, rows, n_valid, b0, KP_BLOCKS, xs, SWIZZLED: tl.constexpr):
    w, s = load_word_tile(w_base, s_base, rows, rows < n_valid, b0, KP_BLOCKS, 4, SWIZZLED)
    return acc + tl.sum(block_dot(w, s, xs), axis=1)


@triton.jit
def group_load(wl, wh, sl, sh, x_row, nl, nh, b0, KP_BLOCKS, NW: tl.constexpr, RPT: tl.constexpr,
               HINT: tl.constexpr, SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr):
    """Each thread's loads of the group of MX blocks ``b0 .. b0 + 3`` (``load_asm``), as a tuple of
    int32 ``[32 * NW]``, the thread's set-0 row last. ``wl`` / ``wh``: int32 code pointers at the lo /
    hi tile's first row (``sl`` / ``sh`` their scales), ``nl`` / ``nh`` rows valid in each,
    ``x_row`` the bf16 activations zero-padded to ``KP_BLOCKS * 32``. Issued a group or two
    ahead of ``group_math`` so that several groups' loads are in flight. ``SWIZZLED``: the codes'
    ``layout.layout_code``, 1 ("fma8") or 2-3 ("fma8t", the tile bases at multiples of 8 rows)."""
    shape = tl.arange(0, 32 * NW)
    if INTERPRET:
        return (b0 + shape * 0, thread_rows(NW))  # the interpreter's math reads memory itself
    else:
        if RPT == 1:
            return tl.inline_asm_elementwise(
                (_LOAD1HT if HINT else _LOAD1T) if SWIZZLED >= 2 else (_LOAD1H if HINT else _LOAD1), _LCON1,
                [shape, wl.to(tl.int64), wh.to(tl.int64), sl.to(tl.int64), sh.to(tl.int64), x_row.to(tl.int64),
                 nl, nh, b0, KP_BLOCKS],
                dtype=(tl.int32,) * 27, is_pure=True, pack=1)
        else:
            return tl.inline_asm_elementwise(
                (_LOAD2HT if HINT else _LOAD2T) if SWIZZLED >= 2 else (_LOAD2H if HINT else _LOAD2), _LCON2,
                [shape, wl.to(tl.int64), wh.to(tl.int64), sl.to(tl.int64), sh.to(tl.int64), x_row.to(tl.int64),
                 nl, nh, b0, KP_BLOCKS],
                dtype=(tl.int32,) * 37, is_pure=True, pack=1)


@triton.jit
def loaded_rows(ld, RPT: tl.constexpr, INTERPRET: tl.constexpr):
    """The set-0 row of each thread, from ``group_load``'s tuple."""
    if INTERPRET:
        return ld[1]
    else:
        return ld[16 + 10 * RPT]


@triton.jit
def group_math(accs, ld, wl, wh, sl, sh, x_row, nl, nh, K, KP_BLOCKS, NW: tl.constexpr, RPT: tl.constexpr,
               SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr):
    """Add a loaded group (``group_load``) to each thread's running sums ``accs`` (a tuple of
    ``2 * RPT`` fp32 ``[32 * NW]``: set r's lo row, hi row; set r's row is the set-0 row plus
    ``8 * NW * r``)."""
    if INTERPRET:
        b0 = tl.max(ld[0], axis=0)
        g = thread_rows(NW)
        xs = load_x_blocks(x_row, b0 + tl.arange(0, 4), K, 4, False)
        lo0 = _quad_sum_ref(accs[0], wl, sl, g, nl, b0, KP_BLOCKS, xs, SWIZZLED)
        hi0 = _quad_sum_ref(accs[1], wh, sh, g, nh, b0, KP_BLOCKS, xs, SWIZZLED)
        if RPT == 1:
            return (lo0, hi0)
        else:
            lo1 = _quad_sum_ref(accs[2], wl, sl, g + 8 * NW, nl, b0, KP_BLOCKS, xs, SWIZZLED)
            hi1 = _quad_sum_ref(accs[3], wh, sh, g + 8 * NW, nh, b0, KP_BLOCKS, xs, SWIZZLED)
            return (lo0, hi0, lo1, hi1)
    else:
        if RPT == 1:
            r = tl.inline_asm_elementwise(
                _MATH1, _MCON1,
                [accs[0].to(tl.int32, bitcast=True), accs[1].to(tl.int32, bitcast=True),
                 ld[0], ld[1], ld[2], ld[3], ld[4], ld[5], ld[6], ld[7], ld[8], ld[9], ld[10], ld[11], ld[12],
                 ld[13], ld[14], ld[15], ld[16], ld[17], ld[18], ld[19], ld[20], ld[21], ld[22], ld[23], ld[24],
                 ld[25]],
                dtype=(tl.int32, tl.int32), is_pure=True, pack=1)
            return (r[0].to(tl.float32, bitcast=True), r[1].to(tl.float32, bitcast=True))
        else:
            r = tl.inline_asm_elementwise(
                _MATH2, _MCON2,
                [accs[0].to(tl.int32, bitcast=True), accs[1].to(tl.int32, bitcast=True),
                 accs[2].to(tl.int32, bitcast=True), accs[3].to(tl.int32, bitcast=True),
                 ld[0], ld[1], ld[2], ld[3], ld[4], ld[5], ld[6], ld[7], ld[8], ld[9], ld[10], ld[11], ld[12],
                 ld[13], ld[14], ld[15], ld[16], ld[17], ld[18], ld[19], ld[20], ld[21], ld[22], ld[23], ld[24],
                 ld[25], ld[26], ld[27], ld[28], ld[29], ld[30], ld[31], ld[32], ld[33], ld[34], ld[35]],
                dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)
            return (r[0].to(tl.float32, bitcast=True), r[1].to(tl.float32, bitcast=True),
                    r[2].to(tl.float32, bitcast=True), r[3].to(tl.float32, bitcast=True))


@triton.jit
def _load(wl, wh, sl, sh, x_row, nl, nh, group, KP_BLOCKS, NW: tl.constexpr, RPT: tl.constexpr, HINT: tl.constexpr,
          SWIZZLED: tl.constexpr, INTERPRET: tl.constexpr):
    return group_load(wl, wh, sl, sh, x_row, nl, nh, group * 4, KP_BLOCKS, NW, RPT, HINT, SWIZZLED, INTERPRET)


@triton.jit
def slice_sums(wl, wh, sl, sh, x_row, nl, nh, g0, K, KP_BLOCKS, NW: tl.constexpr, RPT: tl.constexpr,
               GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr, SWIZZLED: tl.constexpr,
               INTERPRET: tl.constexpr):
    """Each thread's sums over groups ``g0 .. g0 + GROUPS - 1`` (a K slice), ``PF`` (1 or 2) groups'
    loads in flight ahead of the math, ``HINT`` the weight loads' cache hints (``_HINTS``). Returns
    the sums (``group_math``) and the set-0 rows."""
    zero = tl.zeros((32 * NW,), tl.float32)
    accs = (zero, zero) if RPT == 1 else (zero, zero, zero, zero)
    ld0 = _load(wl, wh, sl, sh, x_row, nl, nh, g0, KP_BLOCKS, NW, RPT, HINT, SWIZZLED, INTERPRET)
    if PF == 2 and GROUPS > 1:
        ld1 = _load(wl, wh, sl, sh, x_row, nl, nh, g0 + 1, KP_BLOCKS, NW, RPT, HINT, SWIZZLED, INTERPRET)
    for j in tl.static_range(GROUPS):
        cur = ld0
        if PF == 2:
            if j + 1 < GROUPS:
                ld0 = ld1
            if j + 2 < GROUPS:
                ld1 = _load(wl, wh, sl, sh, x_row, nl, nh, g0 + j + 2, KP_BLOCKS, NW, RPT, HINT, SWIZZLED, INTERPRET)
        else:
            if j + 1 < GROUPS:
                ld0 = _load(wl, wh, sl, sh, x_row, nl, nh, g0 + j + 1, KP_BLOCKS, NW, RPT, HINT, SWIZZLED, INTERPRET)
        accs = group_math(accs, cur, wl, wh, sl, sh, x_row, nl, nh, K, KP_BLOCKS, NW, RPT, SWIZZLED, INTERPRET)
    if not INTERPRET:  # the interpreter's sums are whole rows already
        if RPT == 1:
            accs = (quad_sum(accs[0]), quad_sum(accs[1]))
        else:
            accs = (quad_sum(accs[0]), quad_sum(accs[1]), quad_sum(accs[2]), quad_sum(accs[3]))
    return accs, loaded_rows(cur, RPT, INTERPRET)
