"""Fused elementwise kernels for a decoder layer: what sits between the big matmuls.

A decode step at batch 1 spends little time in any one of these ops, but a layer
written in plain torch launches a few dozen of them (casts, the residual add, the
norm, RoPE's halves and concatenation, the router's top-k and softmax), and each
launch costs a few microseconds even inside a CUDA graph. Each op here is one
kernel on CUDA with a torch reference beside it that the CPU runs:

* ``add_rmsnorm``: residual add, then RMSNorm in fp32 (``norm.py``);
* ``rope_qkv``: split a fused q/k/v projection, rotate q and k (``rope.py``),
  optionally writing k and v into the paged KV cache in the same pass;
* ``route``: a small router's logits, top-k and softmax over the k (``router.py``).

Importing this package does not import Triton; kernels load on first CUDA use.
"""

from quartet.kernels.fused.norm import add_rmsnorm, add_rmsnorm_torch
from quartet.kernels.fused.rope import rope_qkv, rope_qkv_torch
from quartet.kernels.fused.router import route, route_torch

__all__ = ["add_rmsnorm", "add_rmsnorm_torch", "route", "route_torch", "rope_qkv", "rope_qkv_torch"]
