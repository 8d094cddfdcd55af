"""Triton dequantize against ``dequantize_torch``: bit-exact, edge cases included."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4.dequant import DequantTiles, dequantize_triton
from quartet.kernels.mxfp4.format import MXFP4Tensor, quantize_torch
from quartet.kernels.mxfp4.reference import dequantize_torch
from quartet.kernels.mxfp4.layout import to_layout

BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16}


def assert_bits_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal as bit patterns (-0.0 is not 0.0), except that any NaN matches any NaN:
    NaN payloads are not part of the format, and torch's own bf16 casts vary them."""
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = torch.isnan(a)
    assert torch.equal(nan, torch.isnan(b))
    assert torch.equal(a.view(BITS[a.dtype])[~nan], b.view(BITS[b.dtype])[~nan])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # 6 * 2**127 is inf, as intended
@pytest.mark.parametrize("layout", ["ocp", "fma8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(40, 96), (2, 7, 200), (1, 33)])
@pytest.mark.parametrize("tiles", [DequantTiles(), DequantTiles(rows=32, cols=256)], ids=["default", "32x256"])
def test_random_codes_and_every_scale(layout: str, dtype: torch.dtype, shape: tuple[int, ...], tiles: DequantTiles,
                                      device, gen) -> None:
    *lead, n, k = shape
    nb = -(-k // 32)
    blocks = torch.randint(0, 256, (*lead, n, nb, 16), dtype=torch.uint8, device=device, generator=gen)
    scales = torch.randint(0, 256, (*lead, n, nb), dtype=torch.uint8, device=device, generator=gen)
    edge = torch.tensor([0, 254, 1, 255], dtype=torch.uint8, device=device)  # smallest, largest, NaN scales
    scales.view(-1)[: min(4, scales.numel())] = edge[: min(4, scales.numel())]
    w = to_layout(MXFP4Tensor(blocks, scales, k), layout)
    poison = dequantize_triton(w, dtype, tiles=tiles)  # written over a fresh buffer each call; compare two calls too
    assert_bits_equal(dequantize_triton(w, dtype, tiles=tiles), dequantize_torch(w, dtype))
    assert_bits_equal(poison, dequantize_torch(w, dtype))


@pytest.mark.parametrize("layout", ["ocp", "fma8"])
def test_zero_blocks_and_negative_zero(layout: str, device) -> None:
    w = torch.zeros(4, 64, device=device)
    w[1] = -0.0
    w[2, 3] = -1e-30
    q = to_layout(quantize_torch(w), layout)
    out = dequantize_triton(q, torch.float32)
    assert_bits_equal(out, dequantize_torch(q, torch.float32))
    assert torch.signbit(out[1]).all() and not torch.signbit(out[0]).any() and torch.signbit(out[2, 3])


def test_round_trip_through_quantize(device, gen) -> None:
    w = torch.randn(64, 256, device=device, generator=gen) * 0.03
    q = quantize_torch(w)
    assert_bits_equal(dequantize_triton(q, torch.bfloat16), dequantize_torch(q, torch.bfloat16))
    rel = ((dequantize_triton(q, torch.float32) - w).norm() / w.norm()).item()
    assert rel < 0.12  # MXFP4's own quantization noise on Gaussian data (about 0.08-0.1)


def test_rejects_other_dtypes(device) -> None:
    q = quantize_torch(torch.randn(4, 32, device=device))
    with pytest.raises(ValueError, match="bf16 or fp32"):
        dequantize_triton(q, torch.float16)


@pytest.mark.parametrize("layout", ["ocp", "fma8"])
def test_writes_into_a_strided_view_and_nothing_else(layout: str, device, gen) -> None:
    """The prefill MoE dequantizes gate and up into halves of one ``[E, 2N, K]`` buffer: each
    half bit-exact, the other half untouched, with tiles that leave partial row and K tiles."""
    e, n, k = 3, 41, 200
    w = to_layout(quantize_torch(torch.randn(e, n, k, device=device, generator=gen)), layout)
    buf = torch.full((e, 2 * n, k), float("nan"), dtype=torch.bfloat16, device=device)
    out = dequantize_triton(w, torch.bfloat16, out=buf[:, n:], tiles=DequantTiles(rows=16, cols=128))
    assert out.data_ptr() == buf[:, n:].data_ptr()
    assert_bits_equal(buf[:, n:], dequantize_torch(w, torch.bfloat16))
    assert torch.isnan(buf[:, :n]).all()
    with pytest.raises(ValueError, match="view"):
        dequantize_triton(w, torch.float32, out=buf[:, :n])
