"""A tiny random gpt-oss checkpoint in the released on-disk layout, for the oracle tests.

Hugging Face's ``GptOssForCausalLM`` is initialised at random from a small
``GptOssConfig`` (4 layers alternating an 8-token sliding window and full
attention, 8 experts top-2, vocab 1024). Its experts are quantized to MXFP4 with
the kernels' quantizer and written as ``*_blocks``/``*_scales`` exactly as
``openai/gpt-oss-20b`` ships them (``gate_up_proj`` ``[E, 2I, H/32, 16]`` with
interleaved gate/linear rows), dense tensors as bf16, and ``config.json`` carries
the same ``quantization_config``. Transformers then reads that directory through
its own MXFP4 dequantizer, so both sides see the same weights by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from quartet.kernels import dequantize_torch, quantize
from quartet.services.engine.layers.attention import Attention

TINY_CONFIG = dict(
    num_hidden_layers=4,
    num_local_experts=8,
    num_experts_per_tok=2,
    vocab_size=1024,
    hidden_size=64,
    intermediate_size=64,
    head_dim=16,
    num_attention_heads=4,
    num_key_value_heads=2,
    sliding_window=8,
    # Wider than the default 0.02 so the random model's next-token choices are not near-ties.
    initializer_range=0.1,
    max_position_embeddings=4096,
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
)

#: What the released checkpoints declare (``config.json`` of openai/gpt-oss-20b).
QUANTIZATION_CONFIG = {
    "quant_method": "mxfp4",
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
}


def on_mxfp4_grid(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` rounded to MXFP4 values: quantizing it again at load is then lossless."""
    return dequantize_torch(quantize(weight))


def released_layout(state: dict[str, torch.Tensor], *, dense_on_mxfp4_grid: bool = False) -> dict[str, torch.Tensor]:
    """HF's in-memory state dict -> the released safetensors tensors (MXFP4 experts, bf16 elsewhere).

    ``dense_on_mxfp4_grid`` also rounds the dense projections (attention, unembedding) to MXFP4
    values, so a model that quantizes them at load must match the dense one exactly.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if dense_on_mxfp4_grid and name.endswith(("_proj.weight", "lm_head.weight")):
            tensor = on_mxfp4_grid(tensor)
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            # HF holds experts as [E, in, out]; checkpoints store [E, out, in] quantized along "in".
            q = quantize(tensor.transpose(1, 2).contiguous())
            out[name + "_blocks"], out[name + "_scales"] = q.blocks, q.scales
        else:
            out[name] = tensor.detach().to(torch.bfloat16).contiguous()
    return out


def write_tiny_gpt_oss(
    directory: Path, seed: int = 0, *, dense_on_mxfp4_grid: bool = False, **overrides: object
) -> Path:
    """Write a random tiny gpt-oss checkpoint into ``directory``; returns it."""
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(seed)
    config = GptOssConfig(**{**TINY_CONFIG, **overrides})
    model = GptOssForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = released_layout(model.state_dict(), dense_on_mxfp4_grid=dense_on_mxfp4_grid)
    save_file(tensors, str(directory / "model.safetensors"))
    data = config.to_dict()
    data["architectures"] = ["GptOssForCausalLM"]
    data["quantization_config"] = QUANTIZATION_CONFIG
    (directory / "config.json").write_text(json.dumps(data, indent=2))
    return directory


def load_transformers(directory: Path):
    """Transformers' own GptOss from the MXFP4 checkpoint, experts dequantized by its loader, fp32."""
    from transformers import GptOssForCausalLM, Mxfp4Config

    return GptOssForCausalLM.from_pretrained(
        str(directory), dtype=torch.float32, quantization_config=Mxfp4Config(dequantize=True)
    ).eval()


def bind_kv_pools(model: torch.nn.Module, num_blocks: int, block_size: int) -> None:
    """Give every attention layer its own zeroed ``[blocks, block_size, kv_heads, head_dim]`` K and V pools."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.k_cache = torch.zeros(num_blocks, block_size, module.num_kv_heads, module.head_dim)
            module.v_cache = torch.zeros_like(module.k_cache)
