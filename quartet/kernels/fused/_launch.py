"""When the fused ops run their Triton kernels: on CUDA tensors only.

Under ``TRITON_INTERPRET=1`` on the CPU the public ops still take their torch
references (the interpreter is for tests, and a test process that sets it must
not slow down every other CPU forward); the tests call the kernels' ``launch_*``
functions directly to run them interpreted.
"""

from __future__ import annotations

import torch


def use_triton(t: torch.Tensor) -> bool:
    return t.is_cuda
