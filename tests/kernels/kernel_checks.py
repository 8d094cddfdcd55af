"""Shared checks for the kernel tests: the float64 oracle of a linear layer and its bf16 tolerance."""

from __future__ import annotations

import torch

from quartet.kernels.mxfp4.format import MXFP4Tensor
from quartet.kernels.mxfp4.reference import dequantize_torch


def oracle(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x @ dequantize(w)^T + bias`` in float64, and the same sum over absolute values (its scale)."""
    wd = dequantize_torch(w).double()
    ref = x.double() @ wd.T + (0 if bias is None else bias.double())
    return ref, x.double().abs() @ wd.abs().T


def assert_bf16_close(out: torch.Tensor, ref: torch.Tensor, mag: torch.Tensor) -> None:
    """``out`` is ``ref`` (float64) rounded once to bf16, up to fp32 accumulation error.

    Rounding to nearest costs at most 2**-8 of |ref|; fp32 sums of K products cost far
    less than 1e-5 of ``mag`` (the same sum over absolute values), which bounds the rest.
    """
    out, ref = out.double(), ref.double()
    bound = 2.0**-8 * ref.abs() + 1e-5 * mag.double() + 1e-30
    bad = ~((out - ref).abs() <= bound)  # NaN is never close
    assert not bad.any(), (
        f"{int(bad.sum())} of {bad.numel()} elements off; worst |out-ref|={(out - ref).abs().max().item():.3e}, "
        f"at ref={ref[bad][0].item():.4e} out={out[bad][0].item():.4e}"
    )
