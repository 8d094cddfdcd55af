"""Decode GEMV (M <= 16) against the float64 oracle, every variant, split-K and the edge cases."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4._fma import FmaConfig
from quartet.kernels.mxfp4._launch import MatmulConfig, splitk_counters
from quartet.kernels.mxfp4.format import MXFP4Tensor, quantize_torch
from quartet.kernels.mxfp4.gemv import mxfp4_gemv, mxfp4_gemv_torch
from quartet.kernels.mxfp4.layout import to_layout
from tests.kernels.kernel_checks import assert_bf16_close, oracle


def make(m: int, n: int, k: int, device, gen, bias: bool = False):
    w = quantize_torch(torch.randn(n, k, device=device, generator=gen) * 0.05)
    x = torch.randn(m, k, device=device, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, device=device, generator=gen).to(torch.bfloat16) if bias else None
    return x, w, b


LAYOUT = {"dot_scaled": "ocp", "dequant_dot": "fma8", "fma": "fma8"}


@pytest.mark.parametrize("variant", ["dot_scaled", "dequant_dot"])
@pytest.mark.parametrize("m,n,k,split", [(1, 80, 512, 1), (1, 48, 200, 2), (3, 64, 256, 4), (16, 40, 96, 1),
                                         (7, 33, 320, 3)])
def test_tensor_core_variants(variant: str, m: int, n: int, k: int, split: int, device, gen) -> None:
    x, w, b = make(m, n, k, device, gen, bias=m % 2 == 1)
    cfg = MatmulConfig(bm=16, bn=32, bk=64, split_k=split, mode=variant)
    ref, mag = oracle(x, w, b)
    w = to_layout(w, LAYOUT[variant])
    for _ in range(2):  # the second call proves split-K reset its counters
        assert_bf16_close(mxfp4_gemv(x, w, b, variant=variant, config=cfg), ref, mag)


@pytest.mark.parametrize("m,n,k,cfg", [
    (1, 70, 448, FmaConfig(bn=32, kw=64, chunks=1)),  # one K slice (no split-K), a ragged last row chunk
    (1, 70, 448, FmaConfig(bn=16, kw=16, chunks=2)),  # several K slices and row chunks a program
    (2, 96, 512, FmaConfig(bn=32, kw=32, chunks=4)),  # more chunks per program than rows need
    (3, 33, 200, FmaConfig(bn=16, kw=16, chunks=1)),  # K padded to 224, a ragged K slice, a padded row
    (4, 40, 256, FmaConfig(bn=16, kw=8, chunks=2)),
    (4, 24, 75, FmaConfig(bn=8, kw=4, chunks=1)),  # K not a multiple of 8: activations masked per element
])
def test_fma_variant(m: int, n: int, k: int, cfg: FmaConfig, device, gen) -> None:
    x, w, b = make(m, n, k, device, gen, bias=True)
    ref, mag = oracle(x, w, b)
    for _ in range(2):  # the second call proves the fix-up left its counters at zero
        assert_bf16_close(mxfp4_gemv(x, to_layout(w, "fma8"), b, variant="fma", config=cfg), ref, mag)


def test_fma_rows_see_only_their_activations(device, gen) -> None:
    """Each of four rows gets its own product: a row of zeros stays exactly the bias."""
    x, w, b = make(4, 48, 320, device, gen, bias=True)
    x[2] = 0
    out = mxfp4_gemv(x, to_layout(w, "fma8"), b, variant="fma", config=FmaConfig(bn=16, kw=32, chunks=2))
    assert torch.equal(out[2], b)
    ref, mag = oracle(x, w, b)
    assert_bf16_close(out, ref, mag)


def test_fma_every_code_and_extreme_scales(device, gen) -> None:
    """All 16 codes (so 0.5 and -0 too) in every position of a word, under tiny and huge scales.

    Huge stops at 240 (weights near 2**116): past that, sums of products can leave fp32's
    range before they cancel, in any fp32-accumulating kernel; the dequantize tests cover
    the largest scales bit-exactly, overflow to inf included.
    """
    blocks = torch.randint(0, 256, (64, 8, 16), dtype=torch.uint8, device=device, generator=gen)
    blocks[:16, 0] = (torch.arange(16, device=device)[:, None] * 17).to(torch.uint8)  # a row per code, both nibbles
    scales = torch.randint(110, 140, (64, 8), dtype=torch.uint8, device=device, generator=gen)
    scales[16:20] = torch.tensor([1, 10, 200, 240], dtype=torch.uint8, device=device)[:, None]
    w = MXFP4Tensor(blocks, scales, 256)
    x = torch.randn(1, 256, device=device, generator=gen).to(torch.bfloat16)
    ref, mag = oracle(x, w, None)
    out = mxfp4_gemv(x, to_layout(w, "fma8"), variant="fma", config=FmaConfig(bn=16, kw=16, chunks=2))
    assert_bf16_close(out, ref, mag)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the autotuner times configs on a GPU")
def test_fma_autotuned_launch(monkeypatch: pytest.MonkeyPatch, device, gen) -> None:
    monkeypatch.setenv("QUARTET_KERNELS_AUTOTUNE", "1")
    x, w, b = make(1, 300, 1024, device, gen, bias=True)
    ref, mag = oracle(x, w, b)
    for _ in range(2):
        assert_bf16_close(mxfp4_gemv(x, to_layout(w, "fma8"), b, variant="fma"), ref, mag)


@pytest.mark.parametrize("variant", ["dot_scaled", "dequant_dot", "fma"])
def test_default_launch_config_and_leading_dims(variant: str, device, gen) -> None:
    x, w, _ = make(1, 96, 256, device, gen)
    x3 = x.reshape(1, 1, 256)
    ref, mag = oracle(x, w, None)
    out = mxfp4_gemv(x3, to_layout(w, LAYOUT[variant]), variant=variant)
    assert out.shape == (1, 1, 96)
    assert_bf16_close(out.reshape(1, 96), ref, mag)


def test_splitk_counters_are_left_at_zero(device, gen) -> None:
    x, w, _ = make(2, 64, 512, device, gen)
    mxfp4_gemv(x, w, config=MatmulConfig(bm=16, bn=16, bk=64, split_k=4))
    mxfp4_gemv(x[:1], to_layout(w, "fma8"), variant="fma", config=FmaConfig(bn=16, kw=16, chunks=2))
    assert int(splitk_counters(x.device, 1).abs().sum()) == 0


@pytest.mark.parametrize("layout", ["ocp", "fma8"])
def test_k_not_a_multiple_of_32_uses_the_zero_padding(layout: str, device, gen) -> None:
    x, w, b = make(2, 24, 75, device, gen, bias=True)
    assert w.k == 75 and w.k_padded == 96
    ref, mag = oracle(x, w, b)
    assert_bf16_close(mxfp4_gemv(x, to_layout(w, layout), b), ref, mag)


@pytest.mark.parametrize("layout", ["ocp", "fma8"])
def test_zero_weights_give_exact_zero_and_bias(layout: str, device, gen) -> None:
    w = to_layout(quantize_torch(torch.zeros(32, 128, device=device)), layout)
    x = torch.randn(1, 128, device=device, generator=gen).to(torch.bfloat16)
    b = torch.randn(32, device=device, generator=gen).to(torch.bfloat16)
    assert torch.equal(mxfp4_gemv(x, w, b), b[None])


def test_reference_is_the_oracle(device, gen) -> None:
    x, w, b = make(4, 40, 160, device, gen, bias=True)
    ref, mag = oracle(x, w, b)
    assert_bf16_close(mxfp4_gemv_torch(x, w, b), ref, mag)


def test_shape_errors_are_clear(device, gen) -> None:
    x, w, _ = make(17, 32, 64, device, gen)
    with pytest.raises(ValueError, match="at most 16 rows"):
        mxfp4_gemv(x, w)
    with pytest.raises(ValueError, match="K=63"):
        mxfp4_gemv(x[:1, :63], w)
    with pytest.raises(ValueError, match="fma8 layout"):
        mxfp4_gemv(x[:2], w, variant="fma")
    with pytest.raises(ValueError, match="ocp layout"):
        mxfp4_gemv(x[:2], to_layout(w, "fma8"), variant="dot_scaled")
    with pytest.raises(ValueError, match="at most 4 rows"):
        mxfp4_gemv(x[:5], to_layout(w, "fma8"), variant="fma")
    with pytest.raises(ValueError, match="power of two"):
        FmaConfig(kw=12)
    with pytest.raises(TypeError, match="FmaConfig"):
        mxfp4_gemv(x[:2], to_layout(w, "fma8"), variant="fma", config=MatmulConfig(bm=16, bn=16, bk=64))
