"""Which native model class serves a Hugging Face config, and the contract every model keeps.

A native model is an ``nn.Module`` with:

* ``build(hf_config: Mapping, *, device, dtype) -> model`` (classmethod): the model for
  the config with its parameters on the meta device (no random init of weights
  that loading replaces) and its non-persistent buffers (RoPE tables) on ``device``;
* ``load_weights(weights: Mapping[str, Tensor]) -> None``: takes the checkpoint's
  tensors under their Hugging Face names, casts/moves/quantizes them as the
  model needs, and assigns them;
* ``forward(input_ids [T], positions [T], meta: AttentionMetadata) -> hidden [T, H]``,
  attention through ``layers.attention.Attention`` so the runner can bind the
  paged KV cache to it;
* ``compute_logits(hidden [N, H]) -> logits [N, V]``;
* ``config``: its own frozen config dataclass with ``vocab_size`` and ``max_position_embeddings``.

Entries name ``module:Class`` strings so a family's module (and what it imports)
loads only when a checkpoint of that family does.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import torch
from torch import nn

#: Hugging Face ``model_type`` -> "module:Class" implementing it.
MODELS: dict[str, str] = {
    "llama": "services.engine.models.llama:LlamaModel",
    "mistral": "services.engine.models.llama:LlamaModel",
    "qwen2": "services.engine.models.llama:LlamaModel",
    "qwen3": "services.engine.models.llama:LlamaModel",
}

#: Architectures named in ``config.json`` that map to a model_type (old configs lack ``model_type``).
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


def model_class(config: Mapping) -> type[nn.Module]:
    model_type = model_type_of(config)
    if model_type not in MODELS:
        raise ValueError(
            f"the native engine has no model for model_type {model_type!r} "
            f"(it runs {', '.join(sorted(MODELS))}); use ENGINE=transformers"
        )
    module, name = MODELS[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def build_model(config: Mapping, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """The native model for a Hugging Face ``config.json`` (as a dict), ready for ``load_weights``."""
    return model_class(config).build(dict(config, model_type=model_type_of(config)), device=device, dtype=dtype)
