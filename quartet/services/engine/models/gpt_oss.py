"""gpt-oss (OpenAI, 2025) as Hugging Face's ``GptOssForCausalLM`` defines it, on MXFP4 experts.

Reads top to bottom as the architecture (its config, defaults gpt-oss-20b's, is in
``gpt_oss_config.py``): RMSNorm, attention (YaRN rotary embedding in ``yarn.py``) with
sinks on the paged KV cache (sliding-window and full layers alternate), the top-k routed MoE whose experts
stay in MXFP4 and run through ``quartet.kernels.mxfp4_moe`` (Triton on CUDA, the torch
reference elsewhere), decoder layer, model. Weights load from a checkpoint in
the released layout (``*_blocks``/``*_scales`` experts, dense bf16 for the
rest); q/k/v fuse into one matmul at load. Experts stay MXFP4 on every device:
on the CPU the kernels' torch reference dequantizes each routed expert per call
(no dense copy is held: a 20b's experts would take 76 GB in fp32).

References: the gpt-oss model card (arXiv:2508.10925) and OpenAI's
``gpt_oss/torch/model.py``; YaRN: Peng et al. 2023 (arXiv:2309.00071).
"""

from __future__ import annotations

import torch
from torch import nn

from quartet.kernels import MoEWeights, load_gpt_oss_experts, mxfp4_moe, route_topk, to_kernel_layout
from quartet.kernels.fused import add_rmsnorm, rope_qkv, route
from quartet.services.engine.layers.attention import Attention, AttentionMetadata
from quartet.services.engine.models.gpt_oss_config import FULL, SLIDING, GptOssConfig
from quartet.services.engine.models.linear import Linear, laid_out, prefers_transposed
from quartet.services.engine.models.weights import Weights
from quartet.services.engine.models.yarn import Rope, YarnRotaryEmbedding, apply_rope, yarn_inv_freq

__all__ = ["GptOssConfig", "GptOssForCausalLM", "Rope", "YarnRotaryEmbedding", "build_gpt_oss", "yarn_inv_freq"]

class RMSNorm(nn.Module):
    """RMSNorm in fp32 with an fp32 weight, cast back after the scale (HF keeps gpt-oss norms in fp32).

    The layers call ``add_rmsnorm`` with this module's weight and eps (the residual add fused in);
    ``forward`` is the same op without a residual.
    """

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, dtype=torch.float32))
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(normed, new residual) of ``x`` added to ``residual``; see ``quartet.kernels.fused.add_rmsnorm``."""
        return add_rmsnorm(x, residual, self.weight, self.eps)


class GptOssAttention(nn.Module):
    """GQA with QKV bias, sinks (one learned logit per head in the softmax's denominator) and an optional window."""

    def __init__(self, config: GptOssConfig, layer_index: int) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_size, self.kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        bias = config.attention_bias
        self.qkv_proj = Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=bias)
        self.o_proj = Linear(self.q_size, config.hidden_size, bias=bias)
        self.sinks = nn.Parameter(torch.zeros(self.num_heads, dtype=torch.float32))
        window = config.sliding_window if config.layer_types[layer_index] == SLIDING else None
        self.attn = Attention(self.num_heads, self.num_kv_heads, self.head_dim, self.head_dim**-0.5, window)

    def forward(self, x: torch.Tensor, rope: Rope, meta: AttentionMetadata) -> torch.Tensor:
        tokens = x.shape[0]
        qkv = self.qkv_proj(x)
        if rope.cos is None:  # fused: split, rotate (fp32), lay out q/k/v and store k/v in the pool, one kernel
            attn = self.attn
            q, k, v = rope_qkv(qkv, rope.positions, rope.inv_freq, rope.scale, self.num_heads, self.num_kv_heads,
                               k_cache=attn.k_cache, v_cache=attn.v_cache, slots=meta.slot_mapping)  # fmt: skip
            return self.o_proj(attn(q, k, v, meta, sinks=self.sinks, kv_written=attn.k_cache is not None))
        q = qkv[:, : self.q_size].view(tokens, self.num_heads, self.head_dim)
        k = qkv[:, self.q_size : self.q_size + self.kv_size].view(tokens, self.num_kv_heads, self.head_dim)
        v = qkv[:, self.q_size + self.kv_size :].view(tokens, self.num_kv_heads, self.head_dim)
        out = self.attn(apply_rope(q, rope.cos, rope.sin), apply_rope(k, rope.cos, rope.sin), v.contiguous(), meta,
                        sinks=self.sinks)  # fmt: skip
        return self.o_proj(out)


class GptOssMoE(nn.Module):
    """Router (dense, exact) picks the top-k experts per token, softmax over their k logits; experts in MXFP4."""

    def __init__(self, config: GptOssConfig) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.alpha, self.limit = config.swiglu_alpha, config.swiglu_limit
        self.router = Linear(config.hidden_size, config.num_local_experts, bias=True)
        self.experts: MoEWeights | None = None  # set by load_weights: uint8 codes, never widened on the GPU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.experts is None:
            raise RuntimeError("gpt-oss experts are not loaded; call load_weights first")
        if x.is_cuda and not self.router.is_transposed:  # one kernel: logits, top-k, softmax
            ids, weights = route(x, self.router.weight, self.router.bias, self.top_k)
        else:
            ids, weights = route_topk(self.router(x), self.top_k)
        return mxfp4_moe(x, ids, weights, self.experts, alpha=self.alpha, limit=self.limit)


class GptOssDecoderLayer(nn.Module):
    def __init__(self, config: GptOssConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = GptOssAttention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = GptOssMoE(config)

    def forward(
        self, h: torch.Tensor, residual: torch.Tensor | None, rope: Rope, meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` is the previous block's output, ``residual`` the stream before it (None at the first layer).

        Returns this layer's MoE output and the stream before it: the residual add is fused
        into the next norm (``add_rmsnorm``), the same sums in the same order as ``h + f(norm(h))``.
        """
        x, residual = self.input_layernorm(h, residual)
        attn = self.self_attn(x, rope, meta)
        x, residual = self.post_attention_layernorm(attn, residual)
        return self.mlp(x), residual


class GptOssForCausalLM(nn.Module):
    """The engine's model interface: ``forward(ids, positions, meta) -> hidden``, ``compute_logits(hidden)``."""

    def __init__(self, config: GptOssConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(GptOssDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = Linear(config.hidden_size, config.vocab_size)
        self.rotary = YarnRotaryEmbedding(config)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """``input_ids``/``positions`` [T] laid out as ``meta`` says; returns the final-norm hidden states [T, H]."""
        h = self.embed_tokens(input_ids)
        rope = self.rotary(positions, h.dtype, fused=h.is_cuda)
        residual = None
        for layer in self.layers:
            h, residual = layer(h, residual, rope, meta)
        return self.norm(h, residual)[0]

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Rows of ``hidden`` [N, H] -> logits [N, V] (the untied unembedding)."""
        return self.lm_head(hidden)

    def load_weights(self, weights: Weights, *, device: torch.device | str, dtype: torch.dtype) -> None:
        """Load a checkpoint in the released layout (HF names; experts also in the original release's names).

        Dense tensors go to ``dtype`` on ``device``; experts go as MXFP4 (uint8 codes + scales, fp32
        biases) and take the kernels' expert code layout on CUDA (``to_kernel_layout``: tiled "fma8t").
        Norms and sinks stay fp32.
        """
        device = torch.device(device)
        transposed = prefers_transposed(dtype, device)
        dense = lambda name: weights.get(name).to(device=device, dtype=dtype)  # noqa: E731
        fp32 = lambda name: weights.get(name).to(device=device, dtype=torch.float32)  # noqa: E731
        for module in self.modules():
            if isinstance(module, Linear):
                module.set_layout(transposed)
        own: dict[str, torch.Tensor] = {
            "embed_tokens.weight": dense("model.embed_tokens.weight"),
            "norm.weight": fp32("model.norm.weight"),
            "lm_head.weight": laid_out(dense("lm_head.weight"), transposed),
        }
        for i, layer in enumerate(self.layers):
            src, dst = f"model.layers.{i}.", f"layers.{i}."
            attn = src + "self_attn."
            own[dst + "input_layernorm.weight"] = fp32(src + "input_layernorm.weight")
            own[dst + "post_attention_layernorm.weight"] = fp32(src + "post_attention_layernorm.weight")
            qkv = torch.cat([dense(f"{attn}{p}_proj.weight") for p in "qkv"])
            own[dst + "self_attn.qkv_proj.weight"] = laid_out(qkv, transposed)
            own[dst + "self_attn.o_proj.weight"] = laid_out(dense(attn + "o_proj.weight"), transposed)
            if self.config.attention_bias:
                own[dst + "self_attn.qkv_proj.bias"] = torch.cat([dense(f"{attn}{p}_proj.bias") for p in "qkv"])
                own[dst + "self_attn.o_proj.bias"] = dense(attn + "o_proj.bias")
            own[dst + "self_attn.sinks"] = fp32(attn + "sinks")
            own[dst + "mlp.router.weight"] = laid_out(dense(src + "mlp.router.weight"), transposed)
            own[dst + "mlp.router.bias"] = dense(src + "mlp.router.bias")
            experts = load_gpt_oss_experts(weights.get, i, device)
            layer.mlp.experts = to_kernel_layout(experts)  # the CUDA kernels' fast code layout, once (CPU: as is)
        # assign=True keeps these tensors (and lets a meta-device model load without initialising).
        missing, unexpected = self.load_state_dict(own, strict=False, assign=True)
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit gpt-oss: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.rotary.to(device)
        self.requires_grad_(False)
        self.eval()


def build_gpt_oss(config: dict) -> GptOssForCausalLM:
    """The model for an HF ``config.json`` of ``model_type: gpt_oss``, on the meta device (no memory until loaded)."""
    parsed = GptOssConfig.from_hf(config)
    with torch.device("meta"):
        model = GptOssForCausalLM(parsed)
    model.rotary = YarnRotaryEmbedding(parsed)  # a real buffer: computed, not loaded
    return model
