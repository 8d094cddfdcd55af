"""Pure-torch references (the oracles) for the MXFP4 linear layer and the gpt-oss MoE, fp32 math on any device."""

from __future__ import annotations

import torch

# The oracle decodes any layout: it lives here, above format.py and layout.py, so neither imports the other back.
from quartet.kernels.mxfp4.format import MXFP4Tensor, e2m1_decode, e8m0_decode
from quartet.kernels.mxfp4.layout import to_layout
from quartet.kernels.mxfp4.moe_layout import MoEWeights


def dequantize_torch(w: MXFP4Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """MXFP4 -> ``[..., N, k]`` in ``dtype``; exact (every MXFP4 value is a bf16 value)."""
    if w.layout != "ocp":
        w = to_layout(w, "ocp")
    lo = e2m1_decode(w.blocks & 0x0F)
    hi = e2m1_decode(w.blocks >> 4)
    values = torch.stack((lo, hi), dim=-1).flatten(-2)  # [..., N, Kp/32, 32], natural order
    out = values * e8m0_decode(w.scales).unsqueeze(-1)
    out = out.flatten(-2)[..., : w.k]
    return out.to(dtype)


def mxfp4_linear_torch(x: torch.Tensor, w: MXFP4Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x[..., K] @ dequantize(w)[N, K]^T (+ bias)``, fp32 math, result in x's dtype."""
    if x.shape[-1] != w.k:
        raise ValueError(f"x has K={x.shape[-1]} but the weight has K={w.k}")
    y = x.float() @ dequantize_torch(w, torch.float32).T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def route_torch(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """gpt-oss routing: top-k experts by logit (sorted), softmax over those k. -> (ids int32, weights fp32)."""
    top = torch.topk(logits.float(), k, dim=-1, sorted=True)
    return top.indices.to(torch.int32), torch.softmax(top.values, dim=-1)


def swiglu_torch(g: torch.Tensor, lin: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
    """gpt-oss's clamped SwiGLU: the gate is clamped above only, the linear term both ways and offset by 1."""
    g = g.clamp(max=limit)
    return g * torch.sigmoid(alpha * g) * (lin.clamp(-limit, limit) + 1)


def mxfp4_moe_torch(
    x: torch.Tensor,
    ids: torch.Tensor,
    weights: torch.Tensor,
    w: MoEWeights,
    *,
    alpha: float = 1.702,
    limit: float = 7.0,
) -> torch.Tensor:
    """The oracle for ``mxfp4_moe``: per expert, dequantize and run fp32 matmuls; bf16 between the two."""
    t, k = ids.shape
    out = torch.zeros((t, w.hidden), dtype=torch.float32, device=x.device)
    flat = ids.reshape(-1).long()
    wts = weights.reshape(-1).float()
    xf = x.float()
    for e in torch.unique(flat).tolist():
        pair = (flat == e).nonzero().squeeze(1)
        rows = xf[pair // k]
        g = rows @ dequantize_torch(w.glu[e]).T
        lin = rows @ dequantize_torch(w.linear[e]).T
        if w.has_bias:
            g, lin = g + w.glu_bias[e].float(), lin + w.linear_bias[e].float()
        act = swiglu_torch(g, lin, alpha, limit).to(torch.bfloat16).float()
        y = act @ dequantize_torch(w.down[e]).T
        if w.has_bias:
            y = y + w.down_bias[e].float()
        out.index_add_(0, pair // k, y * wts[pair, None])
    return out.to(x.dtype)
