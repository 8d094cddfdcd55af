"""Build a native model from a Hugging Face directory and load its weights in the format asked for.

``ENGINE_WEIGHT_FORMAT`` chooses how the dense linear layers are held:

* ``mxfp4``: quantized at load (OCP MX rounding, blocks of 32) and run through the MXFP4
  kernels, a quarter of bf16's bytes per decode step. gpt-oss experts are MXFP4 in every
  format: they arrive that way and are never widened on the GPU.
* ``bf16``: the dense linears stay dense, in ENGINE_DTYPE (bf16 on CUDA, fp32 on the CPU
  by default): the exact reference for the quantized path.
* ``int8`` (CPU): per-channel int8 weights, activations unquantized
  (``models/int8_linear.py``): a quarter of fp32's bytes per decode step on the CPU.
* ``auto`` (default): ``mxfp4`` on CUDA; on the CPU ``int8`` for the dense Llama family
  (its measured error is in docs/perf-log/cpu-engine.md) and ``bf16`` (dense) for the rest, where
  the MXFP4 ops would run the torch reference that dequantizes on every call.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from quartet.services.engine.models.int8_linear import INT8_BY_DEFAULT, int8_supported, quantize_linears_int8
from quartet.services.engine.models.mxfp4_linear import quantize_linears
from quartet.services.engine.models.registry import build_model, model_type_of
from quartet.services.engine.models.weights import SafetensorsWeights, Weights

log = logging.getLogger(__name__)

WEIGHT_FORMATS = ("auto", "mxfp4", "bf16", "int8")


def resolve_weight_format(weight_format: str, device: torch.device | str, model_type: str | None = None) -> str:
    """``auto`` -> ``mxfp4`` on CUDA; on the CPU ``int8`` for the dense Llama family, else ``bf16``.

    Anything else is checked and returned.
    """
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"ENGINE_WEIGHT_FORMAT={weight_format!r} is unknown; use one of {', '.join(WEIGHT_FORMATS)}")
    if weight_format == "auto":
        if torch.device(device).type == "cuda":
            return "mxfp4"
        return "int8" if model_type in INT8_BY_DEFAULT else "bf16"
    return weight_format


def load_model(
    config: dict,
    weights: Weights,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
    weight_format: str = "auto",
) -> nn.Module:
    """The registry's model for ``config``, its weights loaded on ``device``, dense linears in ``weight_format``."""
    started = time.perf_counter()
    resolved = resolve_weight_format(weight_format, device, model_type_of(config))
    if resolved == "int8" and not int8_supported(device):
        raise ValueError("ENGINE_WEIGHT_FORMAT=int8 runs on the CPU; on CUDA use mxfp4 or bf16")
    model = build_model(config)
    model.load_weights(weights, device=device, dtype=dtype)
    replaced = quantize_linears(model) if resolved == "mxfp4" else []
    if resolved == "int8":
        replaced = quantize_linears_int8(model)
    log.info(
        "model weights loaded",
        extra={
            "weight_format": resolved,
            "quantized_linears": len(replaced),
            "device": str(device),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
    return model


def load_model_dir(
    model_dir: Path, config: dict, *, device: torch.device | str, dtype: torch.dtype, weight_format: str = "auto"
) -> nn.Module:
    """``load_model`` from a directory of safetensors shards (what ``model_cache.resolve_model`` returns)."""
    return load_model(config, SafetensorsWeights(model_dir), device=device, dtype=dtype, weight_format=weight_format)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers the model holds (MXFP4 codes and scales included)."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    for module in model.modules():  # MoE experts live outside parameters: MXFP4 tensors in a dataclass
        experts = getattr(module, "experts", None)
        if experts is not None and hasattr(experts, "glu"):
            for w in (experts.glu, experts.linear, experts.down):
                tensors[id(w.blocks)], tensors[id(w.scales)] = w.blocks, w.scales
            for b in (experts.glu_bias, experts.linear_bias, experts.down_bias):
                if b is not None:
                    tensors[id(b)] = b
    return sum(t.numel() * t.element_size() for t in tensors.values())
