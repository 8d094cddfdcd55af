"""A linear layer whose weight layout follows what is fast for its dtype and device.

Decode multiplies one row (or a few) by every weight matrix, so its speed is
how fast the weights stream from memory. For float32 on CPU, MKL's GEMV reads
PyTorch's usual ``[out, in]`` layout at ~12 GB/s on the AMD EPYC CI machine,
while the same product as ``x @ W_t`` with ``W_t = [in, out]`` contiguous
reaches ~30 GB/s (a 49152x576 matrix, 2 threads). bfloat16 goes through
oneDNN, which is fastest with ``[out, in]``; so is cuBLAS. The results are the
same up to summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def prefers_transposed(dtype: torch.dtype, device: torch.device | str) -> bool:
    return dtype == torch.float32 and torch.device(device).type == "cpu"


class Linear(nn.Module):
    """``y = x W^T + b``; ``weight`` is ``[out, in]``, or ``[in, out]`` when ``is_transposed``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.is_transposed = False

    def set_layout(self, transposed: bool) -> None:
        """Choose the layout before loading weights (the parameter is re-made empty in that shape)."""
        if transposed != self.is_transposed:
            shape = (self.in_features, self.out_features) if transposed else (self.out_features, self.in_features)
            self.weight = nn.Parameter(torch.empty(shape, dtype=self.weight.dtype, device=self.weight.device))
            self.is_transposed = transposed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_transposed:
            return F.linear(x, self.weight, self.bias)
        out = torch.matmul(x, self.weight)
        return out + self.bias if self.bias is not None else out


def laid_out(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """A checkpoint's ``[out, in]`` weight in the layout ``Linear`` will use."""
    return weight.t().contiguous() if transposed else weight
