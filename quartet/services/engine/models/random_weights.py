"""Random gpt-oss weights generated where they will live, served by checkpoint name (benchmarks).

A 20b-shaped checkpoint is 13 GB; generating it on the GPU takes a second and
needs no disk. Shapes and dtypes are the released checkpoint's: experts as
MXFP4 ``*_blocks``/``*_scales`` (uint8 codes drawn uniformly, scale bytes chosen
so weights have an RMS near 0.02), every other tensor bf16. Values are not
meaningful; speed does not depend on them, except that routing is spread
over the experts about evenly, as in the trained model.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from quartet.services.engine.models.gpt_oss import GptOssConfig

#: Scale byte 120 is 2**-7: E2M1 codes drawn uniformly have an RMS of ~3.2, so weights of ~0.025.
SCALE_BYTE = 120
DENSE_STD = 0.02


class RandomGptOssWeights:
    """``Weights`` for a gpt-oss config; each ``get`` draws a fresh tensor on ``device`` (seeded per name)."""

    def __init__(self, config: GptOssConfig, *, device: torch.device | str, seed: int = 0) -> None:
        self.config = config
        self.device = torch.device(device)
        self.seed = seed
        self._shapes = _shapes(config)

    def names(self) -> Iterator[str]:
        return iter(self._shapes)

    def __contains__(self, name: object) -> bool:
        return name in self._shapes

    def get(self, name: str) -> torch.Tensor:
        if name not in self._shapes:
            raise KeyError(f"{name!r} is not a gpt-oss tensor")
        shape, kind = self._shapes[name]
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + sum(map(ord, name)) * 7919)
        if kind == "blocks":
            return torch.randint(0, 256, shape, dtype=torch.uint8, device=self.device, generator=g)
        if kind == "scales":
            return torch.full(shape, SCALE_BYTE, dtype=torch.uint8, device=self.device)
        if kind == "ones":
            return torch.ones(shape, dtype=torch.bfloat16, device=self.device)
        if kind == "zeros":
            return torch.zeros(shape, dtype=torch.bfloat16, device=self.device)
        out = torch.empty(shape, dtype=torch.bfloat16, device=self.device)
        return out.normal_(0.0, DENSE_STD, generator=g)


def _shapes(c: GptOssConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    h, i, e, d = c.hidden_size, c.intermediate_size, c.num_local_experts, c.head_dim
    q, kv = c.num_attention_heads * d, c.num_key_value_heads * d
    shapes: dict[str, tuple[tuple[int, ...], str]] = {
        "model.embed_tokens.weight": ((c.vocab_size, h), "normal"),
        "lm_head.weight": ((c.vocab_size, h), "normal"),
        "model.norm.weight": ((h,), "ones"),
    }
    for n in range(c.num_hidden_layers):
        p = f"model.layers.{n}."
        layer = {
            "input_layernorm.weight": ((h,), "ones"),
            "post_attention_layernorm.weight": ((h,), "ones"),
            "self_attn.q_proj.weight": ((q, h), "normal"),
            "self_attn.q_proj.bias": ((q,), "zeros"),
            "self_attn.k_proj.weight": ((kv, h), "normal"),
            "self_attn.k_proj.bias": ((kv,), "zeros"),
            "self_attn.v_proj.weight": ((kv, h), "normal"),
            "self_attn.v_proj.bias": ((kv,), "zeros"),
            "self_attn.o_proj.weight": ((h, q), "normal"),
            "self_attn.o_proj.bias": ((h,), "zeros"),
            "self_attn.sinks": ((c.num_attention_heads,), "normal"),
            "mlp.router.weight": ((e, h), "normal"),
            "mlp.router.bias": ((e,), "normal"),
            "mlp.experts.gate_up_proj_blocks": ((e, 2 * i, h // 32, 16), "blocks"),
            "mlp.experts.gate_up_proj_scales": ((e, 2 * i, h // 32), "scales"),
            "mlp.experts.gate_up_proj_bias": ((e, 2 * i), "zeros"),
            "mlp.experts.down_proj_blocks": ((e, h, i // 32, 16), "blocks"),
            "mlp.experts.down_proj_scales": ((e, h, i // 32), "scales"),
            "mlp.experts.down_proj_bias": ((e, h), "zeros"),
        }
        shapes.update({p + k: v for k, v in layer.items()})
    return shapes


def hf_config_dict(config: GptOssConfig) -> dict:
    """The ``config.json`` a checkpoint of these shapes would carry (what ``build_gpt_oss`` reads)."""
    return {
        "model_type": "gpt_oss",
        "architectures": ["GptOssForCausalLM"],
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_local_experts": config.num_local_experts,
        "num_experts_per_tok": config.num_experts_per_tok,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "sliding_window": config.sliding_window,
        "layer_types": list(config.layer_types),
        "rms_norm_eps": config.rms_norm_eps,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": config.rope_factor,
            "beta_fast": config.rope_beta_fast,
            "beta_slow": config.rope_beta_slow,
            "truncate": config.rope_truncate,
            "original_max_position_embeddings": config.rope_original_max_position_embeddings,
        },  # fmt: skip
        "rope_theta": config.rope_theta,
        "swiglu_limit": config.swiglu_limit,
        "attention_bias": config.attention_bias,
        "tie_word_embeddings": False,
    }
