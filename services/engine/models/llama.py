"""The Llama family (Llama 2/3, SmolLM2, Qwen2-style dense models) in plain PyTorch.

Reads top to bottom as the architecture: config, RMSNorm, rotary embedding,
grouped-query attention, SwiGLU MLP, decoder layer, model. Two entry points
serve the engine: ``prefill`` runs one prompt and fills its KV slot,
``decode`` advances a batch of slots by one token each.

Layout follows Hugging Face's ``LlamaForCausalLM`` checkpoints (rotate-half
RoPE, q/k/v/o and gate/up/down projections) so safetensors load as they are;
q/k/v and gate/up are fused into one matmul each at load, which halves the
number of small kernels a CPU decode step launches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from services.engine.kv_cache import KVCache
from services.engine.models.linear import Linear, laid_out, prefers_transposed


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
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads ({self.num_key_value_heads})"
            )

    @property
    def num_queries_per_kv(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_hf(cls, config: dict) -> LlamaConfig:
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", None):
            raise ValueError(
                f"RoPE type {rope_type!r} is not supported by the native Llama model yet; use ENGINE=transformers"
            )
        heads = config["num_attention_heads"]
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=config.get("num_key_value_heads", heads),
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            rms_norm_eps=config.get("rms_norm_eps", 1e-6),
            rope_theta=rope.get("rope_theta", config.get("rope_theta", 10000.0)),
            max_position_embeddings=config.get("max_position_embeddings", 2048),
            tie_word_embeddings=config.get("tie_word_embeddings", False),
            attention_bias=config.get("attention_bias", False),
            mlp_bias=config.get("mlp_bias", False),
        )


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


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al. 2021), rotate-half layout; cos/sin tabulated once for every position."""

    def __init__(self, head_dim: int, theta: float, max_positions: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def table(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for ``positions``, looked up once per forward and shared by every layer."""
        return self.cos[positions].to(dtype), self.sin[positions].to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) of the last dimension; cos/sin broadcast against x."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


@dataclass(frozen=True)
class PrefillPack:
    """Several prompts packed end to end into one prefill pass.

    Each token attends to the earlier tokens of its own prompt only: a block-diagonal causal mask.
    Packing reads the weights once for all prompts, which is most of the cost of short prompts.
    """

    slots: list[int]
    starts: list[int]
    lengths: list[int]
    positions: torch.Tensor  # [N] position of each token within its prompt
    last_indices: torch.Tensor  # [B] index of each prompt's last token
    mask: torch.Tensor | None  # [N, N] bool, None for a single prompt

    @classmethod
    def build(cls, lengths: list[int], slots: list[int], device: torch.device) -> PrefillPack:
        starts = [sum(lengths[:i]) for i in range(len(lengths))]
        positions = torch.cat([torch.arange(n, device=device) for n in lengths])
        last = torch.tensor([s + n - 1 for s, n in zip(starts, lengths)], device=device)
        mask = None
        if len(lengths) > 1:
            owner = torch.repeat_interleave(
                torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device)
            )
            mask = (owner.view(-1, 1) == owner.view(1, -1)) & (positions.view(1, -1) <= positions.view(-1, 1))
        return cls(slots, starts, lengths, positions, last, mask)


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        self.qkv_proj = Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=config.attention_bias)
        self.o_proj = Linear(self.q_size, config.hidden_size)
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def prefill(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache, pack: PrefillPack
    ) -> torch.Tensor:
        """x: [N, hidden], the prompts of ``pack`` end to end, each from position 0; rope: cos/sin [N, D]."""
        total = x.shape[0]
        qkv = self.qkv_proj(x).view(total, self.num_heads + 2 * self.num_kv_heads, self.head_dim).transpose(0, 1)
        qk = apply_rope(qkv[: self.num_heads + self.num_kv_heads], *rope)
        q, k = qk[: self.num_heads], qk[self.num_heads :]
        v = qkv[self.num_heads + self.num_kv_heads :]
        keys, values = cache.keys[self.layer_index], cache.values[self.layer_index]
        for slot, start, length in zip(pack.slots, pack.starts, pack.lengths):
            keys[slot, :, :length] = k[:, start : start + length]
            values[slot, :, :length] = v[:, start : start + length]
        if pack.mask is None:  # one prompt: plain causal attention
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, enable_gqa=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=pack.mask, scale=self.scale, enable_gqa=True)
        return self.o_proj(out.transpose(0, 1).reshape(total, self.q_size))

    def decode(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        positions: torch.Tensor,
        cache: KVCache,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """x: [B, hidden], one new token for each of slots 0..B-1; rope: cos/sin [B, 1, D]; mask: [B, 1, 1, L]."""
        batch = x.shape[0]
        qkv = self.qkv_proj(x).view(batch, self.num_heads + 2 * self.num_kv_heads, self.head_dim)
        qk = apply_rope(qkv[:, : self.num_heads + self.num_kv_heads], *rope)
        slots = torch.arange(batch, device=x.device)
        keys, values = cache.keys[self.layer_index], cache.values[self.layer_index]
        keys[slots, :, positions] = qk[:, self.num_heads :]
        values[slots, :, positions] = qkv[:, self.num_heads + self.num_kv_heads :]
        span = mask.shape[-1]
        # GQA without copying K/V: the query heads sharing a KV head become that head's "query positions".
        q = qk[:, : self.num_heads].reshape(
            batch, self.num_kv_heads, self.num_heads // self.num_kv_heads, self.head_dim
        )
        out = F.scaled_dot_product_attention(
            q, keys[:batch, :, :span], values[:batch, :, :span], attn_mask=mask, scale=self.scale
        )
        return self.o_proj(out.reshape(batch, self.q_size))


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
        self.self_attn = Attention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)


class LlamaModel(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rope = RotaryEmbedding(config.head_dim, config.rope_theta, config.max_position_embeddings)
        # Tied embeddings share the head's weight only while both keep the [out, in] layout; see linear.py.
        self.lm_head = Linear(config.hidden_size, config.vocab_size)

    @torch.inference_mode()
    def prefill(
        self, prompts: list[list[int]], cache: KVCache, slots: list[int], *, all_logits: bool = False
    ) -> torch.Tensor:
        """Run prompts into their slots in one pass; logits of each prompt's last position [B, V].

        With ``all_logits`` (one prompt only) returns the logits of every position [T, V].
        """
        device = cache.device
        pack = PrefillPack.build([len(p) for p in prompts], slots, device)
        ids = torch.tensor([t for p in prompts for t in p], dtype=torch.long, device=device)
        h = self.embed_tokens(ids)
        rope = self.rope.table(pack.positions, h.dtype)
        for layer in self.layers:
            h = h + layer.self_attn.prefill(layer.input_layernorm(h), rope, cache, pack)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        if not all_logits:
            h = h[pack.last_indices]
        return self.lm_head(self.norm(h))

    @torch.inference_mode()
    def decode(self, token_ids: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One token for each of slots 0..B-1 at ``positions`` [B]; returns logits [B, V]."""
        span = int(positions.max()) + 1
        visible = torch.arange(span, device=positions.device).view(1, span) <= positions.view(-1, 1)
        mask = visible.view(-1, 1, 1, span)
        h = self.embed_tokens(token_ids)
        cos, sin = self.rope.table(positions, h.dtype)
        rope = (cos.unsqueeze(1), sin.unsqueeze(1))  # broadcast over heads
        for layer in self.layers:
            h = h + layer.self_attn.decode(layer.input_layernorm(h), rope, positions, cache, mask)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.lm_head(self.norm(h))

    def load_hf_state_dict(self, weights: dict[str, torch.Tensor]) -> None:
        """Load a Hugging Face LlamaForCausalLM state dict: fuse q/k/v and gate/up, lay out the linears."""
        embed = weights["model.embed_tokens.weight"]
        transposed = prefers_transposed(embed.dtype, embed.device)

        def t(weight: torch.Tensor) -> torch.Tensor:
            return laid_out(weight, transposed)

        head = embed if self.config.tie_word_embeddings else weights["lm_head.weight"]
        own: dict[str, torch.Tensor] = {
            "embed_tokens.weight": embed,
            "norm.weight": weights["model.norm.weight"],
            "lm_head.weight": t(head),
        }
        for i in range(self.config.num_hidden_layers):
            src, dst = f"model.layers.{i}.", f"layers.{i}."
            for norm in ("input_layernorm", "post_attention_layernorm"):
                own[f"{dst}{norm}.weight"] = weights[f"{src}{norm}.weight"]
            attn, mlp = f"{src}self_attn.", f"{src}mlp."
            own[f"{dst}self_attn.qkv_proj.weight"] = t(torch.cat([weights[f"{attn}{p}_proj.weight"] for p in "qkv"]))
            own[f"{dst}self_attn.o_proj.weight"] = t(weights[f"{attn}o_proj.weight"])
            own[f"{dst}mlp.gate_up_proj.weight"] = t(
                torch.cat([weights[f"{mlp}gate_proj.weight"], weights[f"{mlp}up_proj.weight"]])
            )
            own[f"{dst}mlp.down_proj.weight"] = t(weights[f"{mlp}down_proj.weight"])
            if self.config.attention_bias:
                own[f"{dst}self_attn.qkv_proj.bias"] = torch.cat([weights[f"{attn}{p}_proj.bias"] for p in "qkv"])
            if self.config.mlp_bias:
                own[f"{dst}mlp.gate_up_proj.bias"] = torch.cat(
                    [weights[f"{mlp}gate_proj.bias"], weights[f"{mlp}up_proj.bias"]]
                )
                own[f"{dst}mlp.down_proj.bias"] = weights[f"{mlp}down_proj.bias"]
        for module in self.modules():
            if isinstance(module, Linear):
                module.set_layout(transposed)
        # assign=True keeps these tensors (and lets a meta-device model load without initialising).
        missing, unexpected = self.load_state_dict(own, strict=False, assign=True)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not fit the Llama model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
