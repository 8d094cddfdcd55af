"""Where kernels run: the Triton interpreter on the CPU, or a CUDA device."""

from __future__ import annotations

import functools
import os

import torch


def is_interpreter() -> bool:
    """True when Triton kernels execute in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def can_launch(t: torch.Tensor) -> bool:
    """Whether a Triton kernel can take this tensor: on CUDA, or on the CPU under the interpreter."""
    return t.is_cuda or (t.device.type == "cpu" and is_interpreter())


@functools.cache
def num_sms(device_index: int) -> int:
    """Streaming multiprocessors of a CUDA device; a nominal 4 under the interpreter."""
    if device_index < 0:
        return 4
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def device_sms(t: torch.Tensor) -> int:
    return num_sms(t.device.index if t.is_cuda and t.device.index is not None else (0 if t.is_cuda else -1))
