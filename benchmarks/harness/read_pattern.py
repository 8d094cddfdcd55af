"""How fast a Triton program can stream MXFP4 codes in the access patterns of the decode kernels.

    python -m benchmarks.harness.read_pattern [--rows 184320] [--row-bytes 1440]

Every decode kernel here (grouped MoE, skinny GEMM, GEMV) reads a weight tile a K step at a
time: ``R`` rows x ``W`` 4-byte words, each row's words contiguous and rows ``row-bytes``
apart (the fma8 layout: one weight row's codes in a row). At 64 weights a step that is 32 bytes
a row. This times a kernel that only loads and XOR-folds the words (no decode, no MMA), over a
weight the size of one gpt-oss-20b layer's gate_up experts (32 x 5760 rows of 2880 codes),
in two layouts:

* ``rows``: the fma8 layout as stored, ``R`` rows x ``W`` words a step;
* ``tiles``: the same bytes re-laid so that each step's ``R x W`` words are contiguous (what a
  one-time re-layout at load would give the kernels).

Beside them the copy bandwidth and a plain ``torch.sum`` over the buffer (bytes read / time), all
timed from CUDA-graph replays. If ``rows`` at 32 bytes a step reads far below ``tiles``, the
kernels' short per-row bursts, not their decode, bound them.
"""

from __future__ import annotations

import argparse

import torch
import triton
import triton.language as tl

from benchmarks.harness.timing import time_calls


@triton.jit
def _rows_kernel(q_ptr, out_ptr, ROW_WORDS, R: tl.constexpr, W: tl.constexpr, STEPS: tl.constexpr):
    rows = tl.program_id(0) * R + tl.arange(0, R)
    base = q_ptr + rows[:, None].to(tl.int64) * ROW_WORDS
    acc = tl.zeros((R, W), tl.int32)
    for t in range(STEPS):
        acc ^= tl.load(base + t * W + tl.arange(0, W)[None, :])
    tl.store(out_ptr + tl.program_id(0), tl.reduce(acc, None, _xor))


@triton.jit
def _tiles_kernel(q_ptr, out_ptr, R: tl.constexpr, W: tl.constexpr, STEPS: tl.constexpr):
    base = q_ptr + tl.program_id(0).to(tl.int64) * (STEPS * R * W)
    offs = tl.arange(0, R)[:, None] * W + tl.arange(0, W)[None, :]
    acc = tl.zeros((R, W), tl.int32)
    for t in range(STEPS):
        acc ^= tl.load(base + t * (R * W) + offs)
    tl.store(out_ptr + tl.program_id(0), tl.reduce(acc, None, _xor))


@triton.jit
def _xor(a, b):
    return a ^ b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32 * 5760)
    parser.add_argument("--row-bytes", type=int, default=1440)
    args = parser.parse_args()
    row_words = args.row_bytes // 4
    q = torch.randint(-(2**31), 2**31 - 1, (args.rows, row_words), dtype=torch.int32, device="cuda")
    nbytes = q.numel() * 4
    dst = torch.empty_like(q)
    copy_us = time_calls([lambda: dst.copy_(q)], samples=10).median_us
    print(f"buffer {nbytes / 1e6:.0f} MB; copy {2 * nbytes / copy_us / 1e3:.0f} GB/s (read + write)")
    sum_us = time_calls([lambda: q.sum(dtype=torch.int64)], samples=10).median_us
    print(f"torch.sum: {sum_us:.1f} us, {nbytes / sum_us / 1e3:.0f} GB/s read")
    print("| layout | rows a step | bytes a row a step | warps | us | GB/s read |")
    print("|---|---:|---:|---:|---:|---:|")
    for r, w, warps in ((128, 8, 4), (64, 8, 4), (128, 16, 4), (64, 16, 4), (128, 32, 4), (32, 32, 4),
                        (128, 8, 8), (256, 8, 8)):
        if args.rows % r or row_words % w:
            continue
        steps = row_words // w
        out = torch.empty(args.rows // r, dtype=torch.int32, device="cuda")
        grid = (args.rows // r,)
        def rows() -> torch.Tensor:
            _rows_kernel[grid](q, out, row_words, R=r, W=w, STEPS=steps, num_warps=warps)
            return out

        def tiles() -> torch.Tensor:
            _tiles_kernel[grid](q, out, R=r, W=w, STEPS=steps, num_warps=warps)
            return out

        for name, fn in (("rows", rows), ("tiles", tiles)):
            us = time_calls([fn], samples=10).median_us
            print(f"| {name} | {r} | {4 * w} | {warps} | {us:.1f} | {nbytes / us / 1e3:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
