"""gpt-oss's hyperparameters, parsed from a Hugging Face ``config.json``.

Its own module so that the model's parts (``yarn.py``'s rotary embedding) can
read it without importing the model built from them; ``gpt_oss`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SLIDING, FULL = "sliding_attention", "full_attention"


@dataclass(frozen=True, slots=True)
class GptOssConfig:
    """Defaults are gpt-oss-20b's (``config.json`` of ``openai/gpt-oss-20b``)."""

    vocab_size: int = 201088
    hidden_size: int = 2880
    intermediate_size: int = 2880
    num_hidden_layers: int = 24
    num_local_experts: int = 32
    num_experts_per_tok: int = 4
    num_attention_heads: int = 64
    num_key_value_heads: int = 8
    head_dim: int = 64
    sliding_window: int = 128
    layer_types: tuple[str, ...] = field(default=())  # empty: sliding, full, sliding, ... as HF does
    rms_norm_eps: float = 1e-5
    rope_theta: float = 150000.0
    rope_factor: float = 32.0
    rope_beta_fast: float = 32.0
    rope_beta_slow: float = 1.0
    rope_original_max_position_embeddings: int = 4096
    rope_truncate: bool = False
    max_position_embeddings: int = 131072
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    attention_bias: bool = True

    def __post_init__(self) -> None:
        if not self.layer_types:
            kinds = tuple(SLIDING if i % 2 == 0 else FULL for i in range(self.num_hidden_layers))
            object.__setattr__(self, "layer_types", kinds)
        if len(self.layer_types) != self.num_hidden_layers or set(self.layer_types) - {SLIDING, FULL}:
            raise ValueError(f"layer_types must name {self.num_hidden_layers} layers, each {SLIDING} or {FULL}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if not 0 < self.num_experts_per_tok <= self.num_local_experts:
            raise ValueError("num_experts_per_tok must be between 1 and num_local_experts")

    @classmethod
    def from_hf(cls, config: dict) -> GptOssConfig:
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "yarn"))
        if rope_type != "yarn":
            raise ValueError(f"gpt-oss uses YaRN RoPE; this config asks for {rope_type!r}")
        if config.get("tie_word_embeddings"):
            raise ValueError("gpt-oss's unembedding is untied; tie_word_embeddings=true is not a gpt-oss checkpoint")
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_local_experts=config.get("num_local_experts", config.get("num_experts", 32)),
            num_experts_per_tok=config.get("num_experts_per_tok", 4),
            num_attention_heads=config["num_attention_heads"],
            num_key_value_heads=config["num_key_value_heads"],
            head_dim=config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"],
            sliding_window=config.get("sliding_window") or 128,
            layer_types=tuple(config.get("layer_types") or ()),
            rms_norm_eps=config.get("rms_norm_eps", 1e-5),
            rope_theta=rope.get("rope_theta", config.get("rope_theta", 150000.0)),
            rope_factor=rope.get("factor", 32.0),
            rope_beta_fast=rope.get("beta_fast") or 32.0,
            rope_beta_slow=rope.get("beta_slow") or 1.0,
            rope_original_max_position_embeddings=rope.get("original_max_position_embeddings", 4096),
            rope_truncate=rope.get("truncate", True),
            max_position_embeddings=config.get("max_position_embeddings", 131072),
            swiglu_alpha=config.get("swiglu_alpha", 1.702),
            swiglu_limit=config.get("swiglu_limit", 7.0),
            attention_bias=config.get("attention_bias", True),
        )
