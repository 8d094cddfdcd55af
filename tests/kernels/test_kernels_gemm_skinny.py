"""Decode-batch GEMM (``gemm_skinny``) against the float64 oracle: both operand orientations,
M not a multiple of the tile, N tails, K tails (K not a multiple of BK, nor of 32), split-K
(a split that owns only the masked tail step included)."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4.format import quantize_torch
from quartet.kernels.mxfp4.gemm_skinny import SkinnyConfig, mxfp4_gemm_skinny, skinny_config
from quartet.kernels.mxfp4.layout import to_layout
from tests.kernels.kernel_checks import assert_bf16_close, oracle


@pytest.mark.parametrize("w_left", [False, True])
@pytest.mark.parametrize("m,n,k,bm,split", [(17, 48, 200, 32, 1), (70, 100, 256, 32, 1), (33, 64, 96, 16, 1),
                                            (17, 48, 200, 32, 4), (40, 40, 520, 16, 3)])
def test_matches_oracle(w_left: bool, m: int, n: int, k: int, bm: int, split: int, device, gen) -> None:
    w = to_layout(quantize_torch(torch.randn(n, k, device=device, generator=gen) * 0.05), "fma8")
    x = torch.randn(m, k, device=device, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, device=device, generator=gen).to(torch.bfloat16) if m % 2 else None
    cfg = SkinnyConfig(bm=bm, bn=32, bk=64, w_left=w_left, num_warps=4, split_k=split)
    ref, mag = oracle(x, w, b)
    assert_bf16_close(mxfp4_gemm_skinny(x, w, b, config=cfg), ref, mag)


def test_default_config_keeps_leading_dims(device, gen) -> None:
    w = to_layout(quantize_torch(torch.randn(40, 160, device=device, generator=gen) * 0.05), "fma8")
    x = torch.randn(3, 7, 160, device=device, generator=gen).to(torch.bfloat16)
    out = mxfp4_gemm_skinny(x, w)
    ref, mag = oracle(x.reshape(21, 160), w, None)
    assert out.shape == (3, 7, 40)
    assert_bf16_close(out.reshape(21, 40), ref, mag)


def test_rejects_ocp_codes(device, gen) -> None:
    w = quantize_torch(torch.randn(32, 64, device=device, generator=gen))
    with pytest.raises(ValueError, match="fma8"):
        mxfp4_gemm_skinny(torch.zeros(20, 64, device=device, dtype=torch.bfloat16), w)


def test_config_tall_weights_take_128_rows_short_ones_split_k() -> None:
    assert skinny_config(100, 201088, 2880, 132).bm == 128 and skinny_config(64, 201088, 2880, 132).bm == 64
    unembed, qkv = skinny_config(256, 201088, 2880, 132), skinny_config(64, 5120, 2880, 132)
    assert (unembed.bm, unembed.bn, unembed.w_left, unembed.split_k) == (128, 128, True, 1)
    assert qkv.bm == 64 and qkv.split_k > 1 and 5120 // qkv.bn * qkv.split_k >= 2 * 132
    with pytest.raises(ValueError):
        SkinnyConfig(bk=32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="off CUDA mxfp4_linear runs the torch reference")
@pytest.mark.parametrize("rows,n", [(17, 96), (200, 96), (300, 32768)])
def test_linear_takes_it_at_decode_batches(rows: int, n: int, device, gen) -> None:
    """``mxfp4_linear`` on fma8 weights: 17-255 rows, and tall weights past 256 rows."""
    from quartet.kernels.mxfp4.ops import mxfp4_linear

    w = to_layout(quantize_torch(torch.randn(n, 64, device=device, generator=gen) * 0.05), "fma8")
    x = torch.randn(rows, 64, device=device, generator=gen).to(torch.bfloat16)
    ref, mag = oracle(x, w, None)
    assert_bf16_close(mxfp4_linear(x, w), ref, mag)
