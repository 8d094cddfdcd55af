"""Prefill GEMM against the float64 oracle, every variant and tile edge."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4._launch import MatmulConfig
from quartet.kernels.mxfp4.format import quantize_torch
from quartet.kernels.mxfp4.gemm import mxfp4_gemm
from quartet.kernels.mxfp4.layout import to_layout
from tests.kernels.kernel_checks import assert_bf16_close, oracle


@pytest.mark.parametrize("variant,layout", [("dot_scaled", "ocp"), ("dequant_dot", "ocp"), ("dequant_dot", "fma8")])
@pytest.mark.parametrize("m,n,k", [(17, 48, 200), (70, 64, 256), (33, 100, 128)])
def test_triton_variants(variant: str, layout: str, m: int, n: int, k: int, device, gen) -> None:
    w = quantize_torch(torch.randn(n, k, device=device, generator=gen) * 0.05)
    x = torch.randn(m, k, device=device, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, device=device, generator=gen).to(torch.bfloat16) if m % 2 else None
    ref, mag = oracle(x, w, b)
    cfg = MatmulConfig(bm=32, bn=32, bk=64, group=2, mode=variant)
    assert_bf16_close(mxfp4_gemm(x, to_layout(w, layout), b, variant=variant, config=cfg), ref, mag)


def test_default_config(device, gen) -> None:
    w = quantize_torch(torch.randn(64, 128, device=device, generator=gen) * 0.05)
    x = torch.randn(2, 20, 128, device=device, generator=gen).to(torch.bfloat16)
    out = mxfp4_gemm(x, w)
    ref, mag = oracle(x.reshape(40, 128), w, None)
    assert out.shape == (2, 20, 64)
    assert_bf16_close(out.reshape(40, 64), ref, mag)


@pytest.mark.parametrize("layout", ["ocp", "fma8"])
def test_dequant_cublas_variant(layout: str, device, gen) -> None:
    w = quantize_torch(torch.randn(48, 96, device=device, generator=gen) * 0.05)
    x = torch.randn(24, 96, device=device, generator=gen).to(torch.bfloat16)
    ref, mag = oracle(x, w, None)
    out = mxfp4_gemm(x, to_layout(w, layout), variant="dequant_cublas").double()
    # bf16 matmul: the operands are exact, the library may round partial sums to bf16 on the CPU.
    assert ((out - ref).norm() / ref.norm()).item() < 1e-2
