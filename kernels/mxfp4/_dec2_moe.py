"""MoE decode on the tensor cores (``_dec2_mma.py``): the two launches of ``moe_decode.py`` with
two weights decoded an instruction and ``mma.sync`` as the multiply-add.

gate_up: a program takes one (token, expert) pair, ``BR`` rows and one K slice; its two row
tiles are the same rows of glu and linear, so one ``mma`` serves both and the clamped
SwiGLU needs no exchange. With one K slice it writes the bf16 activations itself, else
the last of a row group's slices sums the partials and finishes them (``_epilogue``).

down: the k experts of a token are more K slices (slice ``q`` is expert ``q // S`` over K
range ``q % S``), each partial times its routing weight, so the fix-up's fixed-order sum is
the weighted expert sum; its two tiles are ``BR`` consecutive rows each. Counters reset in
the kernel, no atomics on data, no host sync: deterministic and graph-safe.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.mxfp4._dec2_mma import pdl_wait, slice_sums
from kernels.mxfp4._env import device_sms, is_interpreter
from kernels.mxfp4._epilogue import arrive, down_finish, gather_tile, release, swiglu_store
from kernels.mxfp4._fma import MmaConfig
from kernels.mxfp4._launch import splitk_counters, whole_blocks
from kernels.mxfp4._matmul import code_pointer
from kernels.mxfp4.layout import layout_code
from kernels.mxfp4.moe_layout import MoEWeights


@triton.jit
def _rows_of(accs, g, NW: tl.constexpr, RPT: tl.constexpr, SET: tl.constexpr):
    """(lo sum, hi sum, row in the tile) of row set ``SET`` of each thread."""
    return accs[2 * SET], accs[2 * SET + 1], g + 8 * NW * SET


@triton.jit
def _gate_up_set(lo, hi, rows, r0, p, e, pid_s, I, part_ptr, stride_split, gb_ptr, lb_ptr, act_ptr, alpha, limit,
                 N_SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    n = r0 + rows
    if N_SPLIT == 1:
        swiglu_store(lo, hi, gb_ptr, lb_ptr, act_ptr, e, p, I, n, n < I, alpha, limit, HAS_BIAS, INTERPRET)
    else:
        base = p * 2 * I + n  # workspace [slices, pairs, 2, I]
        tl.store(part_ptr + pid_s * stride_split + base, lo, mask=n < I)
        tl.store(part_ptr + pid_s * stride_split + base + I, hi, mask=n < I)


@triton.jit
def _publish_done(done_ptr, p, FLAG: tl.constexpr):
    """One launch (``FLAG``): one more of pair ``p``'s row groups has its activations stored. The
    barrier orders every thread's stores before the release (as in ``_epilogue.arrive``)."""
    if FLAG:
        tl.debug_barrier()
        tl.atomic_add(done_ptr + p, 1, sem="release", scope="gpu")


@triton.jit
def _wait_done(done_ptr, p, need, INTERPRET: tl.constexpr):
    """Spin until pair ``p``'s ``need`` row groups are published (``_publish_done``); returns an int32
    zero the compiler cannot see through, added to the activation pointer so the PTX loads (pure
    ``inline_asm``) stay after the loop."""
    c = tl.atomic_add(done_ptr + p, 0, sem="acquire", scope="gpu")
    while c < need:
        c = tl.atomic_add(done_ptr + p, 0, sem="acquire", scope="gpu")
    return _opaque_zero(c, INTERPRET)


@triton.jit
def _opaque_zero(v, INTERPRET: tl.constexpr):
    """An int32 zero computed from ``v`` that the compiler cannot fold: what it is added to depends on ``v``."""
    if INTERPRET:
        return v * 0
    else:
        return tl.inline_asm_elementwise("mov.b32 $0, 0;", "=r,r", [v], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _gate_up_item(x_ptr, ids_ptr, gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr, part_ptr, cnt_ptr, done_ptr,
                  pid_s, pid_r, p, n_rows, n_pairs, after, I, H, stride_x, KP_BLOCKS, TOPK, alpha, limit,
                  HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, N_SPLIT: tl.constexpr, NW: tl.constexpr,
                  RPT: tl.constexpr, GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr,
                  SPLIT_P2: tl.constexpr, SWIZZLED: tl.constexpr, FLAG: tl.constexpr):
    """Pair ``p``'s rows ``pid_r * BR ..`` over K slice ``pid_s`` (of ``n_rows`` row groups and
    ``n_pairs`` pairs); ``after``: the zero from the wait for the kernels before."""
    BR: tl.constexpr = 8 * NW * RPT
    e = tl.load(ids_ptr + after + p).to(tl.int64)
    x_row = x_ptr + after + (p // TOPK).to(tl.int64) * stride_x
    r0 = pid_r * BR
    first = (e * I + r0) * KP_BLOCKS  # the lo tile is glu's rows, the hi tile linear's same rows
    accs, g = slice_sums(gq_ptr + first * 4, lq_ptr + first * 4, gs_ptr + first, ls_ptr + first, x_row, I - r0,
                         I - r0, pid_s * GROUPS, H, KP_BLOCKS, NW, RPT, GROUPS, PF, HINT, SWIZZLED, INTERPRET)
    stride_split = n_pairs * 2 * I
    for s in tl.static_range(RPT):
        lo, hi, rows = _rows_of(accs, g, NW, RPT, s)
        _gate_up_set(lo, hi, rows, r0, p, e, pid_s, I, part_ptr, stride_split, gb_ptr, lb_ptr, act_ptr, alpha, limit,
                     N_SPLIT, HAS_BIAS, INTERPRET)
    if N_SPLIT > 1:
        # The last of the row group's K slices finishes it, summing the slices in a fixed order.
        group = p * n_rows + pid_r
        if arrive(cnt_ptr, group, N_SPLIT):
            n = r0 + tl.arange(0, BR)
            base = p * 2 * I + n
            g_sum = gather_tile(part_ptr, base, n < I, stride_split, N_SPLIT, SPLIT_P2)
            l_sum = gather_tile(part_ptr, base + I, n < I, stride_split, N_SPLIT, SPLIT_P2)
            swiglu_store(g_sum, l_sum, gb_ptr, lb_ptr, act_ptr, e, p, I, n, n < I, alpha, limit, HAS_BIAS, INTERPRET)
            release(cnt_ptr, group)
            _publish_done(done_ptr, p, FLAG)
    else:
        _publish_done(done_ptr, p, FLAG)


@triton.jit
def _down_item(act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr, part_ptr, cnt_ptr, done_ptr,
               q, pid_r, t, n_rows, n_tokens, after, need, I, H, KP_BLOCKS, TOPK: tl.constexpr,
               HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, N_SPLIT: tl.constexpr, NW: tl.constexpr,
               RPT: tl.constexpr, GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr,
               SPLIT_P2: tl.constexpr, SWIZZLED: tl.constexpr, WAIT: tl.constexpr):
    """Token ``t``'s rows ``pid_r * 2 BR ..`` over slice ``q`` (expert ``q // S``, K range ``q % S``);
    ``WAIT``: first wait for ``need`` published row groups of the pair's activations."""
    BR: tl.constexpr = 8 * NW * RPT
    SLICES: tl.constexpr = N_SPLIT // TOPK  # K slices per expert
    p = t * TOPK + q // SLICES
    e = tl.load(ids_ptr + after + p).to(tl.int64)
    weight = tl.load(wts_ptr + after + p).to(tl.float32)
    x_row = act_ptr + after + p.to(tl.int64) * I
    if WAIT:
        x_row += _wait_done(done_ptr, p, need, INTERPRET)
    r0 = pid_r * 2 * BR
    first = (e * H + r0) * KP_BLOCKS
    accs, g = slice_sums(dq_ptr + first * 4, dq_ptr + (first + BR * KP_BLOCKS) * 4, ds_ptr + first,
                         ds_ptr + first + BR * KP_BLOCKS, x_row, H - r0, H - r0 - BR, (q % SLICES) * GROUPS, I,
                         KP_BLOCKS, NW, RPT, GROUPS, PF, HINT, SWIZZLED, INTERPRET)
    stride_split = n_tokens * H  # workspace [slices, T, H]
    out = part_ptr + q * stride_split + t * H + r0
    for s in tl.static_range(RPT):
        lo, hi, rows = _rows_of(accs, g, NW, RPT, s)
        tl.store(out + rows, lo * weight, mask=r0 + rows < H)
        tl.store(out + BR + rows, hi * weight, mask=r0 + BR + rows < H)
    group = t * n_rows + pid_r
    if arrive(cnt_ptr, group, N_SPLIT):
        n = r0 + tl.arange(0, 2 * BR)
        down_finish(y_ptr, db_ptr, ids_ptr, wts_ptr, part_ptr, t, n, n < H, H, stride_split, N_SPLIT,
                     TOPK, HAS_BIAS, INTERPRET, SPLIT_P2)
        release(cnt_ptr, group)


@triton.jit(do_not_specialize=["T"])
def _gate_up_mma_kernel(
    x_ptr, ids_ptr, gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr, part_ptr, cnt_ptr,
    I, H, T, stride_x, KP_BLOCKS, TOPK, alpha, limit,
    HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, N_SPLIT: tl.constexpr,
    NW: tl.constexpr, RPT: tl.constexpr, GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr,
    SPLIT_P2: tl.constexpr, SWIZZLED: tl.constexpr, PDL: tl.constexpr,
):
    after = pdl_wait(PDL)  # the expert ids and x come from kernels before
    # K slices fastest (``_dec2_gemv``)
    _gate_up_item(x_ptr, ids_ptr, gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr, part_ptr, cnt_ptr, cnt_ptr,
                  tl.program_id(0), tl.program_id(1), tl.program_id(2), tl.num_programs(1), tl.num_programs(2), after,
                  I, H, stride_x, KP_BLOCKS, TOPK, alpha, limit, HAS_BIAS, INTERPRET, N_SPLIT, NW, RPT, GROUPS, PF,
                  HINT, SPLIT_P2, SWIZZLED, False)


@triton.jit(do_not_specialize=["T"])
def _down_mma_kernel(
    act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr, part_ptr, cnt_ptr,
    I, H, T, KP_BLOCKS, TOPK: tl.constexpr,
    HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, N_SPLIT: tl.constexpr,
    NW: tl.constexpr, RPT: tl.constexpr, GROUPS: tl.constexpr, PF: tl.constexpr, HINT: tl.constexpr,
    SPLIT_P2: tl.constexpr, SWIZZLED: tl.constexpr, PDL: tl.constexpr,
):
    after = pdl_wait(PDL)  # gate_up's activations (and, before it, the routing)
    # K slices (expert, K range) fastest (``_dec2_gemv``)
    _down_item(act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr, part_ptr, cnt_ptr, cnt_ptr,
               tl.program_id(0), tl.program_id(1), tl.program_id(2), tl.num_programs(1), tl.num_programs(2), after, 0,
               I, H, KP_BLOCKS, TOPK, HAS_BIAS, INTERPRET, N_SPLIT, NW, RPT, GROUPS, PF, HINT, SPLIT_P2, SWIZZLED,
               False)


@triton.jit(do_not_specialize=["T"])
def _moe_one_launch_kernel(
    x_ptr, ids_ptr, wts_ptr, gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, dq_ptr, ds_ptr, db_ptr,
    act_ptr, y_ptr, part_g, part_d, cnt_ptr, I, H, T, stride_x, KB_H, KB_I, alpha, limit,
    TOPK: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, NW: tl.constexpr, HINT: tl.constexpr,
    PDL: tl.constexpr,
    GU_SPLIT: tl.constexpr, GU_RPT: tl.constexpr, GU_GROUPS: tl.constexpr, GU_PF: tl.constexpr,
    GU_P2: tl.constexpr, GU_SW: tl.constexpr,
    DN_SPLIT: tl.constexpr, DN_RPT: tl.constexpr, DN_GROUPS: tl.constexpr, DN_PF: tl.constexpr,
    DN_P2: tl.constexpr, DN_SW: tl.constexpr,
):
    """Both halves in one persistent launch. Items: every gate_up (slice, row group, pair), pair
    slowest, then every down (slice, row group, expert slot, token), the expert slot before the
    token, so a down item's pair finished its gate_up long before (it still checks: ``_wait_done``).
    Programs take every item by ticket (an atomic counter, even the first: a program handed an item
    before it runs could hold gate_up work that resident programs wait for), so items are taken in
    order by running programs: the unfinished gate_up items a waiting program needs are held by
    programs that run and never wait, whatever the number resident (no deadlock). The next ticket is
    drawn as an item starts and read as it ends, so its round trip hides under the item's loads.
    The last program out resets the counters (graph-safe, like ``_epilogue``)."""
    S_DN: tl.constexpr = DN_SPLIT // TOPK
    pairs = T * TOPK
    rows_gu = tl.cdiv(I, 8 * NW * GU_RPT)
    rows_dn = tl.cdiv(H, 16 * NW * DN_RPT)
    n_gu = GU_SPLIT * rows_gu * pairs
    total = n_gu + DN_SPLIT * rows_dn * T
    # counters: [gate_up arrivals][down arrivals][row groups done a pair][ticket, programs out]
    cnt_dn = cnt_ptr + pairs * rows_gu
    done = cnt_dn + T * rows_dn
    ticket = done + pairs
    n_prog = tl.num_programs(0)
    after = pdl_wait(PDL)
    lanes = tl.arange(0, 32 * NW)
    cur = tl.atomic_add(ticket, 1, sem="relaxed", scope="gpu")
    while cur < total:
        nxt = tl.atomic_add(ticket + lanes * 0, 1, mask=lanes == 0, sem="relaxed", scope="gpu")
        # The pair and token counts made to vary by item: else the compiler hoists what derives from them (the
        # fix-ups' [splits, rows] offsets) out of the loop and holds it in registers (128 -> 239 a thread).
        z = _opaque_zero(cur, INTERPRET)
        if cur < n_gu:
            _gate_up_item(x_ptr, ids_ptr, gq_ptr, gs_ptr, lq_ptr, ls_ptr, gb_ptr, lb_ptr, act_ptr, part_g, cnt_ptr,
                          done, cur % GU_SPLIT, (cur // GU_SPLIT) % rows_gu, cur // (GU_SPLIT * rows_gu), rows_gu,
                          pairs + z, after, I, H, stride_x, KB_H, TOPK, alpha, limit, HAS_BIAS, INTERPRET, GU_SPLIT, NW,
                          GU_RPT, GU_GROUPS, GU_PF, HINT, GU_P2, GU_SW, True)
        else:
            j = cur - n_gu
            slot = (j // (S_DN * rows_dn)) % TOPK
            _down_item(act_ptr, ids_ptr, wts_ptr, dq_ptr, ds_ptr, db_ptr, y_ptr, part_d, cnt_dn, done,
                       slot * S_DN + j % S_DN, (j // S_DN) % rows_dn, j // (S_DN * rows_dn * TOPK), rows_dn, T + z, after,
                       rows_gu, I, H, KB_I, TOPK, HAS_BIAS, INTERPRET, DN_SPLIT, NW, DN_RPT, DN_GROUPS, DN_PF, HINT,
                       DN_P2, DN_SW, True)
        cur = tl.max(tl.where(lanes == 0, nxt, 0), axis=0)
    # Out: the last program resets the tickets and the done counts (the arrival counters reset themselves).
    tl.debug_barrier()
    out = tl.atomic_add(ticket + 1, 1, sem="acq_rel", scope="gpu")
    if out == n_prog - 1:
        for b in range(0, pairs, 32 * NW):
            tl.atomic_xchg(done + b + lanes, 0, mask=b + lanes < pairs)
        tl.atomic_xchg(ticket + lanes, 0, mask=lanes < 2)


def _launch(kernel, grid: tuple[int, int, int], cfg: MmaConfig, args: tuple, meta: bool = True, **kw) -> None:
    kernel[grid](*args, **kw, **(cfg.meta() if meta else {}), **cfg.launch_options())


def moe_decode_mma(x: torch.Tensor, ids32: torch.Tensor, wts: torch.Tensor, w: MoEWeights, alpha: float,
                   limit: float, gate_up: MmaConfig, down: MmaConfig) -> torch.Tensor:
    """Decode path on fma8 experts, tensor-core decode. ``x`` ``[T, H]`` (read as bf16), ``ids32`` int32
    ``[T, k]``, ``wts`` fp32 ``[T, k]``; I a multiple of 32 (the activations between the launches are
    read in whole MX blocks). No host synchronisation and no data-dependent sizes (graph-safe)."""
    t, k = ids32.shape
    i_dim, h_dim = w.intermediate, w.hidden
    if i_dim % 32:
        raise ValueError(f"the tensor-core MoE decode needs I a multiple of 32, got {i_dim} (use cuda_cores=True)")
    pairs = t * k
    kb_h, kb_i = w.glu.k_padded // 32, w.down.k_padded // 32
    xb = whole_blocks(x, kb_h)
    act = torch.empty((pairs, i_dim), dtype=torch.bfloat16, device=x.device)
    y = torch.empty((t, h_dim), dtype=torch.bfloat16, device=x.device)
    s_gu, s_dn = gate_up.slices(kb_h), down.slices(kb_i)
    part_g = torch.empty((s_gu, pairs, 2, i_dim), dtype=torch.float32, device=x.device)
    part_d = torch.empty((k * s_dn, t, h_dim), dtype=torch.float32, device=x.device)
    rows_gu, rows_dn = triton.cdiv(i_dim, gate_up.rows), triton.cdiv(h_dim, 2 * down.rows)
    bias = lambda b: act if b is None else b  # noqa: E731
    common = dict(HAS_BIAS=w.has_bias, INTERPRET=is_interpreter())
    if gate_up.one_launch:
        if down.num_warps != gate_up.num_warps:
            raise ValueError(f"one launch runs both halves with one warp count: gate_up has {gate_up.num_warps}, "
                             f"down {down.num_warps}")
        items = (s_gu * rows_gu * pairs) + k * s_dn * rows_dn * t
        cnt = splitk_counters(x.device, pairs * rows_gu + t * rows_dn + pairs + 2)
        # Programs a few an SM (all resident, so none waits to start); the interpreter runs them one by one.
        programs = min(items, gate_up.one_launch * device_sms(x))
        _launch(_moe_one_launch_kernel, (programs, 1, 1), gate_up,
                (xb, ids32, wts, code_pointer(w.glu), w.glu.scales, code_pointer(w.linear), w.linear.scales,
                 bias(w.glu_bias), bias(w.linear_bias), code_pointer(w.down), w.down.scales, bias(w.down_bias),
                 act, y, part_g, part_d, cnt, i_dim, h_dim, t, xb.stride(0), kb_h, kb_i, alpha, limit),
                meta=False, TOPK=k, NW=gate_up.num_warps, HINT=gate_up.hint, PDL=gate_up.meta()["PDL"],
                GU_SPLIT=s_gu, GU_RPT=gate_up.rpt, GU_GROUPS=gate_up.groups, GU_PF=gate_up.prefetch,
                GU_P2=triton.next_power_of_2(s_gu), GU_SW=layout_code(w.glu),
                DN_SPLIT=k * s_dn, DN_RPT=down.rpt, DN_GROUPS=down.groups, DN_PF=down.prefetch,
                DN_P2=triton.next_power_of_2(k * s_dn), DN_SW=layout_code(w.down), **common)
        return y if x.dtype == torch.bfloat16 else y.to(x.dtype)
    cnt = splitk_counters(x.device, max(pairs * rows_gu, t * rows_dn))
    _launch(_gate_up_mma_kernel, (s_gu, rows_gu, pairs), gate_up,
            (xb, ids32, code_pointer(w.glu), w.glu.scales, code_pointer(w.linear), w.linear.scales,
             bias(w.glu_bias), bias(w.linear_bias), act, part_g, cnt,
             i_dim, h_dim, t, xb.stride(0), kb_h, k, alpha, limit),
            N_SPLIT=s_gu, SPLIT_P2=triton.next_power_of_2(s_gu), SWIZZLED=layout_code(w.glu), **common)
    _launch(_down_mma_kernel, (k * s_dn, rows_dn, t), down,
            (act, ids32, wts, code_pointer(w.down), w.down.scales, bias(w.down_bias), y, part_d,
             cnt, i_dim, h_dim, t, kb_i),
            TOPK=k, N_SPLIT=k * s_dn, SPLIT_P2=triton.next_power_of_2(k * s_dn), SWIZZLED=layout_code(w.down),
            **common)
    return y if x.dtype == torch.bfloat16 else y.to(x.dtype)
