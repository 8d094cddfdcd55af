"""YaRN rotary position embedding as gpt-oss uses it (Peng et al. 2023, arXiv:2309.00071).

``yarn_inv_freq`` blends the frequencies; ``YarnRotaryEmbedding`` turns a step's positions into
a ``Rope``: cos/sin for the torch path, or just the positions and frequencies for the fused
CUDA kernel (``quartet.kernels.fused.rope_qkv``), which computes the angles itself in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from quartet.services.engine.models.gpt_oss_config import GptOssConfig


def yarn_inv_freq(config: GptOssConfig) -> tuple[torch.Tensor, float]:
    """YaRN's blended frequencies and attention scale (Peng et al. 2023, §3.2-3.4).

    Dimensions that turn more than ``beta_fast`` times over the original context keep
    their frequency (extrapolation), those turning fewer than ``beta_slow`` times are
    divided by ``factor`` (interpolation), with a linear ramp between; cos and sin are
    multiplied by ``0.1 ln(factor) + 1``. gpt-oss does not round the ramp's ends (truncate=False).
    """
    dim, base = config.head_dim, config.rope_theta

    def correction_dim(rotations: float) -> float:
        return (
            dim
            * math.log(config.rope_original_max_position_embeddings / (rotations * 2 * math.pi))
            / (2 * math.log(base))
        )

    low, high = correction_dim(config.rope_beta_fast), correction_dim(config.rope_beta_slow)
    if config.rope_truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp
    inv_freq = (1 / (config.rope_factor * pos_freqs)) * (1 - extrapolate) + (1 / pos_freqs) * extrapolate
    scale = 0.1 * math.log(config.rope_factor) + 1.0 if config.rope_factor > 1 else 1.0
    return inv_freq, scale


@dataclass(frozen=True, slots=True)
class Rope:
    """One step's rotary inputs: the positions, and cos/sin [T, 1, D/2] for the torch path (None when fused)."""

    positions: torch.Tensor
    inv_freq: torch.Tensor
    scale: float
    cos: torch.Tensor | None = None
    sin: torch.Tensor | None = None


class YarnRotaryEmbedding(nn.Module):
    """cos/sin for the step's positions, computed from the frequencies as HF does (no table to outgrow)."""

    def __init__(self, config: GptOssConfig) -> None:
        super().__init__()
        inv_freq, self.scale = yarn_inv_freq(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype, *, fused: bool = False) -> Rope:
        """The step's ``Rope``; ``fused``: leave cos/sin to the fused kernel (CUDA), which computes them in fp32."""
        if fused:
            return Rope(positions, self.inv_freq, self.scale)
        angles = positions.float().unsqueeze(-1) * self.inv_freq  # [T, D/2]
        cos = (angles.cos() * self.scale).to(dtype).unsqueeze(1)
        sin = (angles.sin() * self.scale).to(dtype).unsqueeze(1)
        return Rope(positions, self.inv_freq, self.scale, cos, sin)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) of ``x [T, heads, D]``; cos/sin are ``[T, 1, D/2]``."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
