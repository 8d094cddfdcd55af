"""Every kernel that reads fma8 codes gives the same result on the tiled "fma8t" layout.

Each case runs one op on the same weight in both layouts and checks the tiled run against the
torch reference and against the row-major run. Shapes put an odd number of MX blocks along K
(a last group of one block) beside whole groups, rows that are not a multiple of the kernels'
row tiles, and K that is not a multiple of 32.
"""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4._fma import FmaConfig, MmaConfig, moe_mma_defaults
from quartet.kernels.mxfp4.dequant import dequantize_triton
from quartet.kernels.mxfp4.format import quantize_torch
from quartet.kernels.mxfp4.reference import dequantize_torch
from quartet.kernels.mxfp4.gemm_skinny import SkinnyConfig, mxfp4_gemm_skinny
from quartet.kernels.mxfp4.gemv import mxfp4_gemv
from quartet.kernels.mxfp4.layout import to_layout
from quartet.kernels.mxfp4.moe import GroupedConfig, GroupedTiles, mxfp4_moe_triton
from quartet.kernels.mxfp4.moe_decode import moe_decode_fma
from quartet.kernels.mxfp4.moe_dense import DenseConfig
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.ops import EXPERT_LAYOUT, kernel_layout, to_kernel_layout
from quartet.kernels.mxfp4.reference import mxfp4_linear_torch, mxfp4_moe_torch, route_torch


def _close(out: torch.Tensor, ref: torch.Tensor, tol: float = 1e-2) -> None:
    out, ref = out.double(), ref.double()
    rel = ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()
    assert rel < tol, f"rel L2 {rel:.2e}"


def _both(w, run):
    """(row-major result, tiled result) of ``run(weight)``."""
    return run(to_layout(w, "fma8")), run(to_layout(w, "fma8t"))


LINEAR = [
    ("gemv fma", 1, lambda x, w: mxfp4_gemv(x, w, variant="fma", config=FmaConfig(bn=16, kw=32, chunks=2))),
    ("gemv mma", 1, lambda x, w: mxfp4_gemv(x, w, variant="mma",
                                            config=MmaConfig(num_warps=1, rpt=2, groups=2, prefetch=2, hint=1))),
    ("gemv mma prefetch 1", 1, lambda x, w: mxfp4_gemv(x, w, variant="mma",
                                                       config=MmaConfig(num_warps=2, rpt=1, groups=1, prefetch=1))),
    ("gemv fma 4 rows", 4, lambda x, w: mxfp4_gemv(x, w, variant="fma", config=FmaConfig(bn=8, kw=64, chunks=1))),
    ("gemv dequant_dot", 9, lambda x, w: mxfp4_gemv(x, w, variant="dequant_dot")),
    ("skinny f32", 20, lambda x, w: mxfp4_gemm_skinny(x, w, config=SkinnyConfig(bm=16, bn=32, bk=64, decode="f32"))),
    ("skinny w_left split", 33, lambda x, w: mxfp4_gemm_skinny(
        x, w, config=SkinnyConfig(bm=16, bn=16, bk=64, w_left=True, split_k=2, decode="f32"))),
]


@pytest.mark.parametrize("name,rows,op", LINEAR, ids=[c[0] for c in LINEAR])
@pytest.mark.parametrize("n,k", [(48, 352), (40, 200), (16, 96), (24, 256)])
def test_linear_kernels_read_fma8t(name: str, rows: int, op, n: int, k: int, device, gen) -> None:
    w = quantize_torch(torch.randn(n, k, device=device, generator=gen) * 0.1)
    x = torch.randn(rows, k, device=device, generator=gen).bfloat16()
    row_major, tiled = _both(w, lambda wl: op(x, wl))
    _close(tiled, mxfp4_linear_torch(x.float(), w))
    _close(tiled, row_major, 1e-3)


@pytest.mark.parametrize("stack", [(), (3,)])
def test_dequantize_reads_fma8t(stack: tuple[int, ...], device, gen) -> None:
    w = quantize_torch(torch.randn(*stack, 24, 200, device=device, generator=gen))
    row_major, tiled = _both(w, lambda wl: dequantize_triton(wl, torch.float32))
    assert torch.equal(tiled, dequantize_torch(w)) and torch.equal(tiled, row_major)


E, TOPK = 8, 4

MOE = [
    ("decode default one token", 1, lambda x, ids, wts, w: moe_decode_fma(x, ids, wts, w, 1.702, 7.0)),
    ("decode cuda cores", 2, lambda x, ids, wts, w: moe_decode_fma(x, ids, wts, w, 1.702, 7.0, cuda_cores=True)),
    ("decode mma", 2, lambda x, ids, wts, w: moe_decode_fma(
        x, ids, wts, w, 1.702, 7.0, MmaConfig(num_warps=1, rpt=2, groups=1, prefetch=1, hint=1),
        MmaConfig(num_warps=1, rpt=1, groups=2, prefetch=2))),
    ("decode dequant_dot", 2, lambda x, ids, wts, w: mxfp4_moe_triton(x, ids, wts, w, path="decode",
                                                                        mode="dequant_dot")),
    ("grouped paired", 12, lambda x, ids, wts, w: mxfp4_moe_triton(
        x, ids, wts, w, path="grouped", config=GroupedConfig(block=16, bn=16, bn_down=32, bk=64, pair_rows=True,
                                                              w_left=True, prefetch_scales=True))),
    ("grouped", 12, lambda x, ids, wts, w: mxfp4_moe_triton(
        x, ids, wts, w, path="grouped", config=GroupedConfig(block=16, bn=32, bn_down=16, bk=64))),
    ("grouped tiles", 12, lambda x, ids, wts, w: mxfp4_moe_triton(
        x, ids, wts, w, path="grouped", config=GroupedTiles(block=16, bn=32, bn_down=32))),
    ("dense", 12, lambda x, ids, wts, w: mxfp4_moe_triton(x, ids, wts, w, path="dense",
                                                            config=DenseConfig(block=16))),
    ("dense cublas", 12, lambda x, ids, wts, w: mxfp4_moe_triton(x, ids, wts, w, path="dense_cublas")),
]


@pytest.mark.parametrize("name,tokens,op", MOE, ids=[c[0] for c in MOE])
@pytest.mark.parametrize("H2,I", [(160, 64), (128, 128)])  # 5 MX blocks: an odd last one; whole groups
def test_moe_kernels_read_fma8t(name: str, tokens: int, op, H2: int, I: int, device, gen) -> None:  # noqa: N803
    gate_up = quantize_torch(torch.randn(E, 2 * I, H2, device=device, generator=gen) * 0.15)
    down = quantize_torch(torch.randn(E, H2, I, device=device, generator=gen) * 0.15)
    w = MoEWeights.from_gate_up(gate_up, down, torch.randn(E, 2 * I, device=device, generator=gen),
                                torch.randn(E, H2, device=device, generator=gen))
    x = torch.randn(tokens, H2, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(tokens, E, device=device, generator=gen), TOPK)
    ids32 = ids.to(torch.int32)
    row_major, tiled = op(x, ids32, wts, w.to_layout("fma8")), op(x, ids32, wts, w.to_layout("fma8t"))
    _close(tiled, mxfp4_moe_torch(x.float(), ids, wts, w).to(tiled.dtype))
    _close(tiled, row_major, 2e-3)


def test_kernel_layout_choice() -> None:
    """Matrices default to row-major fma8, experts to EXPERT_LAYOUT (tiled), and a shape the tiles
    cannot hold falls back to fma8; on the CPU nothing is re-laid (the reference reads any layout)."""
    assert EXPERT_LAYOUT == "fma8t"
    dense = quantize_torch(torch.randn(16, 64))
    assert kernel_layout(dense) == "fma8" and kernel_layout(dense, "fma8t") == "fma8t"
    experts = MoEWeights.from_gate_up(quantize_torch(torch.randn(2, 32, 64)), quantize_torch(torch.randn(2, 64, 16)))
    assert kernel_layout(experts) == "fma8t" and kernel_layout(experts, "fma8") == "fma8"
    odd = MoEWeights.from_gate_up(quantize_torch(torch.randn(2, 24, 64)), quantize_torch(torch.randn(2, 64, 12)))
    assert kernel_layout(odd) == "fma8"  # I = 12: the default falls back
    with pytest.raises(ValueError, match="multiple of 8"):  # asked for by name, it fails
        to_layout(quantize_torch(torch.randn(12, 64)), kernel_layout(quantize_torch(torch.randn(12, 64)), "fma8t"))
    with pytest.raises(ValueError, match="layout"):
        kernel_layout(dense, "tiled")
    assert to_kernel_layout(dense) is dense and to_kernel_layout(experts) is experts


def test_moe_decode_default_one_token_splits_k(device, gen) -> None:
    """The one-token default's K slices (5 groups, 20 MX blocks) over a 21-block gate_up row: a second,
    ragged slice whose groups past the row's end read nothing."""
    h2, i = 672, 64
    gate_up = quantize_torch(torch.randn(E, 2 * i, h2, device=device, generator=gen) * 0.1)
    down = quantize_torch(torch.randn(E, h2, i, device=device, generator=gen) * 0.1)
    w = MoEWeights.from_gate_up(gate_up, down, torch.randn(E, 2 * i, device=device, generator=gen),
                                torch.randn(E, h2, device=device, generator=gen)).to_layout("fma8t")
    gu, _ = moe_mma_defaults(1, h2 // 32, i // 32, tiled=True)
    assert gu.slices(h2 // 32) == 2
    x = torch.randn(1, h2, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(1, E, device=device, generator=gen), TOPK)
    out = moe_decode_fma(x, ids.to(torch.int32), wts, w, 1.702, 7.0)
    _close(out, mxfp4_moe_torch(x.float(), ids, wts, w).to(out.dtype))
