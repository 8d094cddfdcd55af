"""The dense Llama family — Llama 2/3, SmolLM2, Mistral, Qwen2, Qwen3 — in plain PyTorch.

Reads top to bottom as the architecture: config, RMSNorm, rotary embedding,
grouped-query attention over the paged KV cache, SwiGLU MLP, decoder layer,
model. The members differ only in small switches the config carries:

* Qwen2: bias on q/k/v (not on o); optional sliding-window layers (``layer_types``).
* Qwen3: RMSNorm over each head of q and k before RoPE (``q_norm``/``k_norm``), no bias.
* Llama 3: the "llama3" RoPE frequency scaling; Mistral: one sliding window on every layer.

Layout follows Hugging Face checkpoints (rotate-half RoPE, q/k/v/o and
gate/up/down projections) so safetensors load as they are; q/k/v and gate/up
are fused into one matmul each at load, which halves the number of small
kernels a CPU decode step launches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from quartet.services.engine.layers.attention import Attention, AttentionMetadata
from quartet.services.engine.models.linear import Linear, laid_out, prefers_transposed
from quartet.services.engine.models.weights import Weights

#: ``model_type`` values of Hugging Face configs this file implements.
MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True, slots=True)
class LlamaConfig:
    """Defaults are SmolLM2-135M's."""

    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_hidden_layers: int = 30
    num_attention_heads: int = 9
    num_key_value_heads: int = 3
    head_dim: int = 64
    rms_norm_eps: float = 1e-5
    rope_theta: float = 100000.0
    rope_scaling: tuple[tuple[str, float], ...] = ()  # the "llama3" parameters, as sorted (key, value) pairs
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_windows: tuple[int | None, ...] = ()  # per layer; empty means full attention everywhere

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.sliding_windows and len(self.sliding_windows) != self.num_hidden_layers:
            raise ValueError(f"{len(self.sliding_windows)} sliding windows for {self.num_hidden_layers} layers")

    def sliding_window(self, layer_index: int) -> int | None:
        return self.sliding_windows[layer_index] if self.sliding_windows else None

    @classmethod
    def from_hf(cls, config: Mapping) -> LlamaConfig:
        model_type = config.get("model_type", "llama")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not a Llama-family model ({', '.join(MODEL_TYPES)})")
        rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
        rope_type = rope.get("rope_type", rope.get("type", "default")) or "default"
        if rope_type not in ("default", "llama3"):
            raise ValueError(f"RoPE type {rope_type!r} is not supported by the native model; use ENGINE=transformers")
        scaling = ()
        if rope_type == "llama3":
            keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
            scaling = tuple((k, float(rope[k])) for k in keys)
        heads = config["num_attention_heads"]
        layers = config["num_hidden_layers"]
        attention_bias = bool(config.get("attention_bias", False))
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            rms_norm_eps=config.get("rms_norm_eps", 1e-6),
            rope_theta=rope.get("rope_theta", config.get("rope_theta", 10000.0)),
            rope_scaling=scaling,
            max_position_embeddings=config.get("max_position_embeddings", 2048),
            tie_word_embeddings=config.get("tie_word_embeddings", False),
            qkv_bias=True if model_type == "qwen2" else attention_bias,
            o_bias=False if model_type == "qwen2" else attention_bias,
            mlp_bias=config.get("mlp_bias", False),
            qk_norm=model_type == "qwen3",
            sliding_windows=_sliding_windows(config, model_type, layers),
        )


def _sliding_windows(config: Mapping, model_type: str, layers: int) -> tuple[int | None, ...]:
    window = config.get("sliding_window")
    if model_type == "mistral" and window:
        return (int(window),) * layers
    types = config.get("layer_types")
    if types and window and "sliding_attention" in types:
        return tuple(int(window) if t == "sliding_attention" else None for t in types)
    return ()


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019), computed in float32 like the reference."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).to(x.dtype) * self.weight


def rope_inv_freq(head_dim: int, theta: float, scaling: Mapping[str, float]) -> torch.Tensor:
    """RoPE's per-pair frequencies; with "llama3" scaling, long wavelengths are slowed (Meta's Llama 3.1 recipe)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if not scaling:
        return inv_freq
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    wavelength = 2 * math.pi / inv_freq
    # Short wavelengths stay, long ones are divided by ``factor``, the band between is interpolated.
    smooth = (original / wavelength - low) / (high - low)
    interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelength > original / low, inv_freq / factor, inv_freq)
    is_medium = (wavelength >= original / high) & (wavelength <= original / low)
    return torch.where(is_medium, interpolated, scaled)


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al. 2021), rotate-half layout; cos/sin tabulated once for every position."""

    def __init__(self, head_dim: int, theta: float, max_positions: int, scaling: Mapping[str, float] = {}) -> None:
        super().__init__()
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), rope_inv_freq(head_dim, theta, scaling))
        angles = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def table(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [T, 1, D] for ``positions`` [T], broadcast over heads; looked up once per forward."""
        cos, sin = self.cos.index_select(0, positions), self.sin.index_select(0, positions)
        return cos.to(dtype).unsqueeze(1), sin.to(dtype).unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) of the last dimension; cos/sin broadcast against x."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class LlamaAttention(nn.Module):
    def __init__(self, config: LlamaConfig, layer_index: int) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size = self.num_heads * self.head_dim
        self.qkv_proj = Linear(
            config.hidden_size, self.q_size + 2 * self.num_kv_heads * self.head_dim, bias=config.qkv_bias
        )
        self.o_proj = Linear(self.q_size, config.hidden_size, bias=config.o_bias)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if config.qk_norm else None
        self.attn = Attention(
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            scale=1.0 / math.sqrt(self.head_dim),
            sliding_window=config.sliding_window(layer_index),
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """x [T, hidden]; cos/sin [T, 1, D]."""
        qkv = self.qkv_proj(x).view(x.shape[0], self.num_heads + 2 * self.num_kv_heads, self.head_dim)
        heads = self.num_heads + self.num_kv_heads
        if self.q_norm is None:  # one RoPE call over q and k together
            qk = apply_rope(qkv[:, :heads], cos, sin)
        else:
            q = self.q_norm(qkv[:, : self.num_heads])
            k = self.k_norm(qkv[:, self.num_heads : heads])
            qk = apply_rope(torch.cat((q, k), dim=1), cos, sin)
        out = self.attn(qk[:, : self.num_heads], qk[:, self.num_heads :], qkv[:, heads:], meta)
        return self.o_proj(out)


class MLP(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x)), gate and up fused."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, meta)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    """Build with ``build_llama`` (parameters on the meta device), then ``load_weights``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rope = RotaryEmbedding(
            config.head_dim, config.rope_theta, config.max_position_embeddings, dict(config.rope_scaling)
        )
        # Tied embeddings share the head's weight only while both keep the [out, in] layout; see linear.py.
        self.lm_head = Linear(config.hidden_size, config.vocab_size)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Hidden states [T, hidden] (after the final norm) of the step's tokens ``input_ids`` [T] at ``positions``."""
        h = self.embed_tokens(input_ids)
        cos, sin = self.rope.table(positions, h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin, meta)
        return self.norm(h)

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits [N, V] for hidden states [N, hidden]."""
        return self.lm_head(hidden)

    def load_weights(self, weights: Weights, *, device: torch.device | str, dtype: torch.dtype) -> None:
        """Load a Hugging Face checkpoint's tensors: cast and move, fuse q/k/v and gate/up, lay out the linears."""
        device = torch.device(device)
        transposed = prefers_transposed(dtype, device)

        def get(name: str) -> torch.Tensor:
            return weights.get(name).to(device=device, dtype=dtype)

        def cat(names: list[str]) -> torch.Tensor:
            return torch.cat([get(n) for n in names])

        embed = get("model.embed_tokens.weight")
        head = embed if self.config.tie_word_embeddings else get("lm_head.weight")
        own: dict[str, torch.Tensor] = {
            "embed_tokens.weight": embed,
            "norm.weight": get("model.norm.weight"),
            "lm_head.weight": laid_out(head, transposed),
        }
        for i in range(self.config.num_hidden_layers):
            src, dst = f"model.layers.{i}.", f"layers.{i}."
            for norm in ("input_layernorm", "post_attention_layernorm"):
                own[f"{dst}{norm}.weight"] = get(f"{src}{norm}.weight")
            attn, mlp = f"{src}self_attn.", f"{src}mlp."
            qkv = cat([f"{attn}{p}_proj.weight" for p in "qkv"])
            own[f"{dst}self_attn.qkv_proj.weight"] = laid_out(qkv, transposed)
            own[f"{dst}self_attn.o_proj.weight"] = laid_out(get(f"{attn}o_proj.weight"), transposed)
            gate_up = cat([f"{mlp}gate_proj.weight", f"{mlp}up_proj.weight"])
            own[f"{dst}mlp.gate_up_proj.weight"] = laid_out(gate_up, transposed)
            own[f"{dst}mlp.down_proj.weight"] = laid_out(get(f"{mlp}down_proj.weight"), transposed)
            if self.config.qkv_bias:
                own[f"{dst}self_attn.qkv_proj.bias"] = cat([f"{attn}{p}_proj.bias" for p in "qkv"])
            if self.config.o_bias:
                own[f"{dst}self_attn.o_proj.bias"] = get(f"{attn}o_proj.bias")
            if self.config.qk_norm:
                own[f"{dst}self_attn.q_norm.weight"] = get(f"{attn}q_norm.weight")
                own[f"{dst}self_attn.k_norm.weight"] = get(f"{attn}k_norm.weight")
            if self.config.mlp_bias:
                own[f"{dst}mlp.gate_up_proj.bias"] = cat([f"{mlp}gate_proj.bias", f"{mlp}up_proj.bias"])
                own[f"{dst}mlp.down_proj.bias"] = get(f"{mlp}down_proj.bias")
        for module in self.modules():
            if isinstance(module, Linear):
                module.set_layout(transposed)
        # assign=True keeps these tensors (and lets a meta-device model load without initialising).
        missing, unexpected = self.load_state_dict(own, strict=False, assign=True)
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.rope.to(device)
        self.requires_grad_(False)
        self.eval()


def build_llama(config: Mapping) -> LlamaModel:
    """The model for a Hugging Face config of the Llama family, on the meta device (no memory until loaded)."""
    parsed = LlamaConfig.from_hf(config)
    with torch.device("meta"):
        model = LlamaModel(parsed)
    # A real buffer: computed, not loaded.
    model.rope = RotaryEmbedding(
        parsed.head_dim, parsed.rope_theta, parsed.max_position_embeddings, dict(parsed.rope_scaling)
    )
    return model
