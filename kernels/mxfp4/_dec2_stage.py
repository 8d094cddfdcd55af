"""The tensor-core decode of a K slice with its weights staged through shared memory (``MmaConfig.stage``).

``_dec2_mma.slice_sums`` keeps one or two groups of loads in flight in registers (about 37
registers a group), so a program's later groups wait on loads it can only issue as earlier
groups finish: at one token the MoE layer's programs each made four or five dependent round
trips through a loaded memory system (docs/PERFORMANCE.md, run J12). Here one PTX block issues
every group of the slice at once as ``cp.async`` copies into shared memory (16 bytes a thread
and row set; a masked row's copy is zero-filled), the slice's activations too (by the first
``16 * groups`` threads, into one shared run all lanes read), and the scale bytes as plain
loads; then it waits for one commit group at a time and runs the same decode and ``mma``s
(``_dec2_mma.group_math_lines``). The registers hold one group's operands, not the loads in
flight; shared memory holds ``groups * (64 * threads + 256)`` bytes a program.

CUDA only (the interpreter cannot run PTX): the interpreter runs ``slice_sums``' reference path,
and the CUDA tests compare both paths with the torch reference.
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels.mxfp4._dec2_mma import _HINTS, group_math_lines, quad_sum, slice_sums


def _addresses(side: str, base: str, scales: str, valid: str, r: int, hint: str, tiled: bool) -> list[str]:
    """Row set ``r``'s ``side`` tile at the current block ``blk``: predicate ``pr``, the code address ``a``
    (the safe base where masked) and the copy size ``sz`` (0 where masked: zero-fill), and the scale byte
    into ``sb``."""
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
        "selp.b64 a, a, safe, pr;", "selp.u32 sz, 16, 0, pr;",
        "cvt.s64.s32 o, u;", f"add.s64 o, {scales}, o;",
        "mov.b16 sb, 0;", f"@pr ld.global{hint}.b8 sb, [o];",
    ]


def stage_asm(rpt: int, groups: int, nw: int, hint: int = 1, tiled: bool = True) -> str:
    """PTX: one thread's sums over ``groups`` groups from block ``$b0`` (before ``quad_sum``). Outputs: the
    sums (fp32 bits; set r's lo row at 2r, hi row at 2r + 1), then the thread's set-0 row. Inputs: a
    ``[32 * nw]`` tensor that only gives the outputs their shape, the lo / hi code and scale tile bases,
    the activation row (zero-padded to whole blocks), lo / hi valid rows, the first block, blocks a row."""
    nt = 32 * nw
    n_out = 2 * rpt + 1
    wl, wh, sl, sh, xp, nl, nh, b0, kpb = (f"${n_out + 1 + i}" for i in range(9))
    w_bytes = groups * 2 * rpt * nt * 16
    size = w_bytes + groups * 256
    acc = [f"A{i}" for i in range(2 * rpt)]
    scale = [[f"S{j}_{k}" for k in range(2 * rpt)] for j in range(groups)]
    lines = ["{", ".reg .pred pb, pr, px;", ".reg .b16 sb;", ".reg .b64 a, o, ob, safe;",
             ".reg .b32 t, g, c, blk, gr, nw8, rs, kp, u, tw, tg, q, sz, sbase, d;",
             ".reg .b32 " + ", ".join(acc) + ";",
             ".reg .b32 " + ", ".join(s for row in scale for s in row) + ";",
             ".reg .b32 " + ", ".join(f"W{i}" for i in range(8 * rpt)) + ", " + ", ".join(f"X{i}" for i in range(16))
             + ";",
             f".shared .align 16 .b8 stg[{size}];", "mov.u32 sbase, stg;",
             # Thread -> (row g, block c): 8 rows and 4 blocks a warp, warps stacked along rows (as load_asm).
             "mov.u32 t, %tid.x;", "and.b32 c, t, 3;", "shr.u32 g, t, 5;", "shl.b32 g, g, 3;",
             "bfe.u32 u, t, 2, 3;", "add.s32 g, g, u;", "mov.u32 nw8, %ntid.x;", "shr.u32 nw8, nw8, 2;",
             f"mov.b32 kp, {kpb};", f"mov.b64 safe, {wl};",
             *[f"mov.b32 {a}, 0;" for a in acc]]
    lines += ["shl.b32 rs, kp, 3;"] if tiled else ["shl.b32 rs, kp, 4;"]
    # The slice's activations: thread t < 16 * groups copies 16 bytes, block (t / 4) of the slice,
    # quarter t % 4, to shared byte w_bytes + 16 t (zero past the row's blocks).
    lines += [f"setp.lt.u32 px, t, {16 * groups};", "shr.u32 u, t, 2;", f"add.s32 u, u, {b0};",
              "setp.lt.s32 pr, u, kp;", "and.pred pr, pr, px;", "selp.u32 sz, 16, 0, pr;",
              "mul.wide.s32 o, u, 64;", f"add.s64 a, {xp}, o;", "and.b32 u, t, 3;", "mul.wide.u32 o, u, 16;",
              "add.s64 a, a, o;", f"selp.b64 a, a, {xp}, pr;", "shl.b32 d, t, 4;", f"add.u32 d, d, {w_bytes};",
              "add.u32 d, d, sbase;", "@px cp.async.cg.shared.global [d], [a], 16, sz;"]
    for j in range(groups):
        lines += [f"add.s32 blk, {b0}, c;", f"add.s32 blk, blk, {4 * j};", "setp.lt.s32 pb, blk, kp;",
                  "mul.wide.s32 ob, blk, 16;"]
        if tiled:
            lines += ["shr.u32 u, blk, 1;", "shl.b32 tg, u, 4;", "and.b32 u, blk, 1;", "add.s32 tg, tg, u;",
                      "and.b32 u, blk, 0xFFFFFFFE;", "sub.s32 tw, kp, u;", "min.s32 tw, tw, 2;"]
        for r in range(rpt):
            for side, (base, scales, valid) in enumerate(((wl, sl, nl), (wh, sh, nh))):
                k = 2 * r + side
                lines += _addresses("lh"[side], base, scales, valid, r, _HINTS[hint], tiled)
                lines += [f"cvt.u32.u16 {scale[j][k]}, sb;", "shl.b32 d, t, 4;",
                          f"add.u32 d, d, {(j * 2 * rpt + k) * nt * 16};", "add.u32 d, d, sbase;",
                          "cp.async.cg.shared.global [d], [a], 16, sz;"]
        lines.append("cp.async.commit_group;")
    for j in range(groups):
        lines.append(f"cp.async.wait_group {groups - 1 - j};")
        if j == 0:  # the activations came from other threads' copies (all in the first commit group)
            lines.append(f"bar.sync 15, {nt};")
        for k in range(2 * rpt):
            w = [f"W{4 * k + i}" for i in range(4)]
            lines += ["shl.b32 d, t, 4;", f"add.u32 d, d, {(j * 2 * rpt + k) * nt * 16};", "add.u32 d, d, sbase;",
                      f"ld.shared.v4.b32 {{{', '.join(w)}}}, [d];"]
        lines += ["shl.b32 d, c, 6;", f"add.u32 d, d, {w_bytes + j * 256};", "add.u32 d, d, sbase;"]
        lines += [f"ld.shared.v4.b32 {{X{4 * i}, X{4 * i + 1}, X{4 * i + 2}, X{4 * i + 3}}}, [d+{16 * i}];"
                  for i in range(4)]
        rows = [[f"W{8 * r + i}" for i in range(4)] + [f"W{8 * r + 4 + i}" for i in range(4)]
                + [scale[j][2 * r], scale[j][2 * r + 1]] for r in range(rpt)]
        lines += group_math_lines(acc, acc, [f"X{i}" for i in range(16)], rows)
    lines += [f"mov.b32 ${i}, {a};" for i, a in enumerate(acc)] + [f"mov.b32 ${n_out - 1}, g;", "}"]
    return "\n".join(lines)


# The launches the staged path serves: 4 warps of two rows a thread, 1 to 5 groups; "fma8t" (T) or "fma8" codes.
_S1T = tl.constexpr(stage_asm(2, 1, 4))
_S2T = tl.constexpr(stage_asm(2, 2, 4))
_S3T = tl.constexpr(stage_asm(2, 3, 4))
_S4T = tl.constexpr(stage_asm(2, 4, 4))
_S5T = tl.constexpr(stage_asm(2, 5, 4))
_S1 = tl.constexpr(stage_asm(2, 1, 4, tiled=False))
_S2 = tl.constexpr(stage_asm(2, 2, 4, tiled=False))
_S3 = tl.constexpr(stage_asm(2, 3, 4, tiled=False))
_S4 = tl.constexpr(stage_asm(2, 4, 4, tiled=False))
_S5 = tl.constexpr(stage_asm(2, 5, 4, tiled=False))
_SCON = tl.constexpr(",".join(["=r"] * 5 + ["r"] + ["l"] * 5 + ["r"] * 4))


@triton.jit
def _staged(args, G: tl.constexpr, TILED: tl.constexpr):
    if TILED:
        if G == 1:
            return tl.inline_asm_elementwise(_S1T, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        elif G == 2:
            return tl.inline_asm_elementwise(_S2T, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        elif G == 3:
            return tl.inline_asm_elementwise(_S3T, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        elif G == 4:
            return tl.inline_asm_elementwise(_S4T, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        else:
            return tl.inline_asm_elementwise(_S5T, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
    else:
        if G == 1:
            return tl.inline_asm_elementwise(_S1, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        elif G == 2:
            return tl.inline_asm_elementwise(_S2, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        elif G == 3:
            return tl.inline_asm_elementwise(_S3, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        elif G == 4:
            return tl.inline_asm_elementwise(_S4, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)
        else:
            return tl.inline_asm_elementwise(_S5, _SCON, args, dtype=(tl.int32,) * 5, is_pure=True, pack=1)


@triton.jit
def staged_slice_sums(wl, wh, sl, sh, x_row, nl, nh, g0, KP_BLOCKS, NW: tl.constexpr, RPT: tl.constexpr,
                      GROUPS: tl.constexpr, HINT: tl.constexpr, SWIZZLED: tl.constexpr):
    """``slice_sums`` with every group of the slice in flight at once through shared memory (``stage_asm``)."""
    tl.static_assert(NW == 4 and RPT == 2 and HINT == 1 and GROUPS <= 5,
                     "the staged decode serves 4 warps, two rows a thread, hint 1, up to 5 groups")
    shape = tl.arange(0, 32 * NW)
    r = _staged([shape, wl.to(tl.int64), wh.to(tl.int64), sl.to(tl.int64), sh.to(tl.int64), x_row.to(tl.int64),
                 nl, nh, g0 * 4, KP_BLOCKS], GROUPS, SWIZZLED >= 2)
    accs = (quad_sum(r[0].to(tl.float32, bitcast=True)), quad_sum(r[1].to(tl.float32, bitcast=True)),
            quad_sum(r[2].to(tl.float32, bitcast=True)), quad_sum(r[3].to(tl.float32, bitcast=True)))
    return accs, r[4]


@triton.jit
def k_slice_sums(wl, wh, sl, sh, x_row, nl, nh, g0, K, KP_BLOCKS, NW: tl.constexpr, RPT: tl.constexpr,
                 GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr, SWIZZLED: tl.constexpr,
                 INTERPRET: tl.constexpr, STAGE: tl.constexpr):
    """``slice_sums``, or with ``STAGE`` on CUDA its staged form (the interpreter always runs the former)."""
    if STAGE and not INTERPRET:
        return staged_slice_sums(wl, wh, sl, sh, x_row, nl, nh, g0, KP_BLOCKS, NW, RPT, GROUPS, HINT, SWIZZLED)
    else:
        return slice_sums(wl, wh, sl, sh, x_row, nl, nh, g0, K, KP_BLOCKS, NW, RPT, GROUPS, PF, HINT, SWIZZLED,
                          INTERPRET)
