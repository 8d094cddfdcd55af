"""Load MXFP4 tensors from gpt-oss checkpoints (Hugging Face and original naming).

Hugging Face: ``model.layers.N.mlp.experts.gate_up_proj_blocks`` / ``_scales`` / ``_bias``
and ``down_proj_*``. Original release: ``block.N.mlp.mlp1_weight.blocks`` / ``.scales``,
``mlp1_bias``, ``mlp2_*``. Blocks are uint8 ``[..., N, K/32, 16]`` (low nibble = even
element), scales uint8 ``[..., N, K/32]`` with bias 127: the canonical layout here, so
loading is validation plus the one-time MoE re-layout in ``MoEWeights.from_gate_up``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Union

import torch

from quartet.kernels.mxfp4.format import BLOCK_SIZE, MXFP4Tensor
from quartet.kernels.mxfp4.moe_layout import MoEWeights

# A safetensors handle (``safe_open(...)``), a mapping of name -> tensor, or a callable that
# raises KeyError for a missing name.
TensorSource = Union[Callable[[str], torch.Tensor], Mapping[str, torch.Tensor], Any]


def _get(source: TensorSource, name: str) -> torch.Tensor:
    if hasattr(source, "get_tensor") and hasattr(source, "keys"):
        if name not in source.keys():
            raise KeyError(name)
        return source.get_tensor(name)
    if isinstance(source, Mapping):
        return source[name]
    return source(name)


def from_blocks(blocks: torch.Tensor, scales: torch.Tensor) -> MXFP4Tensor:
    """Wrap checkpoint ``blocks`` and ``scales`` (validated; K = blocks * 32)."""
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise TypeError(f"MXFP4 checkpoint tensors must be uint8, got {blocks.dtype} / {scales.dtype}")
    return MXFP4Tensor(blocks.contiguous(), scales.contiguous(), int(blocks.shape[-2]) * BLOCK_SIZE)


def load_mxfp4(get: TensorSource, name: str) -> MXFP4Tensor:
    """``name`` without suffix: tries ``name_blocks``/``name_scales``, then ``name.blocks``/``name.scales``."""
    for blocks_name, scales_name in ((f"{name}_blocks", f"{name}_scales"), (f"{name}.blocks", f"{name}.scales")):
        try:
            blocks = _get(get, blocks_name)
        except KeyError:
            continue
        return from_blocks(blocks, _get(get, scales_name))
    raise KeyError(f"no MXFP4 tensor {name!r} (looked for {name}_blocks and {name}.blocks)")


def load_gpt_oss_experts(get: TensorSource, layer: int, device: torch.device | str = "cpu") -> MoEWeights:
    """One layer's experts, in either naming, re-laid out for the kernels and moved to ``device``."""
    hf = f"model.layers.{layer}.mlp.experts."
    try:
        gate_up, down = load_mxfp4(get, hf + "gate_up_proj"), load_mxfp4(get, hf + "down_proj")
        gate_up_bias, down_bias = _get(get, hf + "gate_up_proj_bias"), _get(get, hf + "down_proj_bias")
    except KeyError:
        orig = f"block.{layer}.mlp."
        gate_up, down = load_mxfp4(get, orig + "mlp1_weight"), load_mxfp4(get, orig + "mlp2_weight")
        gate_up_bias, down_bias = _get(get, orig + "mlp1_bias"), _get(get, orig + "mlp2_bias")
    return MoEWeights.from_gate_up(gate_up.to(device), down.to(device), gate_up_bias.to(device), down_bias.to(device))
