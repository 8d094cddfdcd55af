"""Which native model serves a Hugging Face config, and the contract every native model keeps.

A family module exposes a builder, ``build_x(config: dict) -> model``, that
returns the model for a Hugging Face ``config.json`` with its parameters on the
meta device (no memory, no random init of weights that loading replaces) and
its computed buffers (RoPE tables) real. The model is an ``nn.Module`` with:

* ``load_weights(weights: Weights, *, device, dtype) -> None``: reads the
  checkpoint's tensors by their Hugging Face names (``models/weights.py``),
  casts/moves/quantizes them as it needs, assigns them and moves its buffers;
* ``forward(input_ids [T], positions [T], meta: AttentionMetadata) -> hidden [T, H]``,
  attention through ``layers.attention.Attention`` so the runner can bind the
  paged KV cache to it (``KVCache.bind``);
* ``compute_logits(hidden [N, H]) -> logits [N, V]``;
* ``config``: its frozen config dataclass, with ``vocab_size`` and ``max_position_embeddings``.

Entries are "module:function" strings so a family's module (and what it
imports, e.g. the MXFP4 kernels) loads only when a checkpoint of that family does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from torch import nn

#: Hugging Face ``model_type`` -> "module:builder" implementing it.
MODELS: dict[str, str] = {
    "llama": "quartet.services.engine.models.llama:build_llama",
    "mistral": "quartet.services.engine.models.llama:build_llama",
    "qwen2": "quartet.services.engine.models.llama:build_llama",
    "qwen3": "quartet.services.engine.models.llama:build_llama",
    "gpt_oss": "quartet.services.engine.models.gpt_oss:build_gpt_oss",
}

#: Architectures named in ``config.json``, for configs without a ``model_type``.
ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "GptOssForCausalLM": "gpt_oss",
}


def model_type_of(config: Mapping) -> str:
    model_type = config.get("model_type")
    if model_type:
        return str(model_type)
    for architecture in config.get("architectures") or ():
        if architecture in ARCHITECTURES:
            return ARCHITECTURES[architecture]
    return "unknown"


def is_supported(config: Mapping) -> bool:
    return model_type_of(config) in MODELS


def builder(config: Mapping) -> Callable[[dict], nn.Module]:
    model_type = model_type_of(config)
    if model_type not in MODELS:
        raise ValueError(
            f"the native engine has no model for model_type {model_type!r} "
            f"(it runs {', '.join(sorted(MODELS))}); use ENGINE=transformers"
        )
    module, name = MODELS[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def build_model(config: Mapping) -> nn.Module:
    """The native model for a Hugging Face ``config.json`` dict, on the meta device, ready for ``load_weights``."""
    return builder(config)(dict(config, model_type=model_type_of(config)))
