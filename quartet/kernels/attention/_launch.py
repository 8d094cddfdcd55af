"""Launch heuristics for the paged attention kernels: tile sizes, warps and the decode split.

Not tuned by a sweep yet (docs/perf-log/attention.md, "GPU: paged attention kernels", has the first
measurements); change them only with a new measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from quartet.kernels.mxfp4._env import can_launch, device_sms, is_interpreter

__all__ = ["DecodeConfig", "PrefillConfig", "can_launch", "decode_config", "device_sms", "is_interpreter",
           "prefill_config"]

#: Most splits of one sequence in the decode kernel: the combine step reads all of them.
MAX_SPLITS = 64


def pow2_at_least(n: int, floor: int = 16) -> int:
    """``tl.dot`` wants power-of-two tiles of at least 16 along every dimension."""
    return max(floor, 1 << max(0, n - 1).bit_length())


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    """``block_n`` keys a loop step; ``num_splits`` programs share one (sequence, KV head)."""

    block_n: int = 64
    num_splits: int = 1
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self) -> None:
        if self.block_n < 16 or self.block_n & (self.block_n - 1):
            raise ValueError(f"block_n={self.block_n} must be a power of two >= 16")
        if not 1 <= self.num_splits <= MAX_SPLITS:
            raise ValueError(f"num_splits={self.num_splits} must be in [1, {MAX_SPLITS}]")


def decode_config(batch: int, kv_heads: int, max_blocks: int, block_size: int, sms: int) -> DecodeConfig:
    """Split along the sequence (flash-decoding) only while batch x KV heads leaves SMs idle.

    Depends on the batch (rounded up to a power of two) and the device alone, never on the
    sequence lengths, so a captured CUDA graph keeps a valid grid; each split takes an equal
    share of the blocks a sequence actually reads (computed in the kernel), so short or windowed
    sequences just leave some splits empty. The split count is a compile-time constant: an
    eager step's batch of decodes (any size, beside a prompt chunk) must land on a count the
    decode graphs' batch buckets (powers of two up to 16) already compiled, not trigger a
    compilation mid-serving (an H100 run saw four such steps take 0.4-1.1 s instead of 0.12 s).
    ``max_blocks`` and ``block_size`` are kept for callers; the split no longer depends on them.
    """
    del max_blocks, block_size
    block_n = 64
    programs = (1 << max(0, batch - 1).bit_length()) * kv_heads
    if programs >= sms:
        return DecodeConfig(block_n=block_n)
    splits = min(-(-2 * sms // programs), MAX_SPLITS)
    return DecodeConfig(block_n=block_n, num_splits=max(1, splits))


@dataclass(frozen=True, slots=True)
class PrefillConfig:
    """``block_m`` query rows (tokens x the query heads of one KV head) against ``block_n`` keys a step."""

    block_m: int = 128
    block_n: int = 64
    num_warps: int = 8
    num_stages: int = 2

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name}={value} must be a power of two >= 16")


def prefill_config(groups: int) -> PrefillConfig:
    """128 rows a tile (16 tokens of gpt-oss's 8 query heads per KV head), at least one token's heads."""
    return PrefillConfig(block_m=max(128, pow2_at_least(groups)))
