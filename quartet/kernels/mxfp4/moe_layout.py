"""gpt-oss expert weights, re-laid out once at load time, and the grouping of tokens by expert.

gpt-oss stores gate_up as ``[E, 2I, H]`` with interleaved rows: even rows are the gate
("glu") projection, odd rows the linear ("up") one. The kernels want the two as separate
``[E, I, H]`` tensors, so one program's tile holds row ``i`` of both and SwiGLU runs on
the accumulators with no shuffle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from quartet.kernels.mxfp4.format import MXFP4Tensor


@dataclass(frozen=True, slots=True)
class MoEWeights:
    """One MoE layer's experts. Biases are fp32 (or None)."""

    glu: MXFP4Tensor  # [E, I, H]
    linear: MXFP4Tensor  # [E, I, H]
    down: MXFP4Tensor  # [E, H, I]
    glu_bias: torch.Tensor | None = None  # [E, I]
    linear_bias: torch.Tensor | None = None  # [E, I]
    down_bias: torch.Tensor | None = None  # [E, H]

    def __post_init__(self) -> None:
        e, i, h = self.glu.shape
        if self.linear.shape != (e, i, h):
            raise ValueError(f"linear {self.linear.shape} must match glu {self.glu.shape}")
        if self.down.shape != (e, h, i):
            raise ValueError(f"down must be [E={e}, H={h}, I={i}], got {self.down.shape}")
        for name, shape in (("glu_bias", (e, i)), ("linear_bias", (e, i)), ("down_bias", (e, h))):
            bias = getattr(self, name)
            if bias is not None and tuple(bias.shape) != shape:
                raise ValueError(f"{name} must be {list(shape)}, got {list(bias.shape)}")
        if (self.glu_bias is None) != (self.linear_bias is None) or (self.glu_bias is None) != (self.down_bias is None):
            raise ValueError("give all three biases or none")
        if len({self.glu.layout, self.linear.layout, self.down.layout}) != 1:
            raise ValueError("glu, linear and down must share one code layout")

    @property
    def num_experts(self) -> int:
        return self.glu.shape[0]

    @property
    def hidden(self) -> int:
        return self.glu.shape[2]

    @property
    def intermediate(self) -> int:
        return self.glu.shape[1]

    @property
    def has_bias(self) -> bool:
        return self.glu_bias is not None

    @classmethod
    def from_gate_up(
        cls,
        gate_up: MXFP4Tensor,
        down: MXFP4Tensor,
        gate_up_bias: torch.Tensor | None = None,
        down_bias: torch.Tensor | None = None,
    ) -> MoEWeights:
        """Split gpt-oss's interleaved ``[E, 2I, H]`` gate_up (and its ``[E, 2I]`` bias)."""
        if len(gate_up.shape) != 3 or gate_up.shape[1] % 2:
            raise ValueError(f"gate_up must be [E, 2I, H], got {gate_up.shape}")
        if gate_up.layout == "fma8t":  # its rows are tiled, so every other row is not a row slice
            raise ValueError("split gate_up before tiling it: MoEWeights.from_gate_up(...).to_layout('fma8t')")

        def rows(t: MXFP4Tensor, parity: int) -> MXFP4Tensor:
            return MXFP4Tensor(t.blocks[:, parity::2].contiguous(), t.scales[:, parity::2].contiguous(), t.k, t.layout)

        def bias(b: torch.Tensor | None, parity: int | None) -> torch.Tensor | None:
            if b is None:
                return None
            return (b if parity is None else b[:, parity::2]).float().contiguous()

        return cls(
            glu=rows(gate_up, 0), linear=rows(gate_up, 1), down=down.contiguous(),
            glu_bias=bias(gate_up_bias, 0), linear_bias=bias(gate_up_bias, 1), down_bias=bias(down_bias, None),
        )

    @property
    def layout(self) -> str:
        return self.glu.layout

    def to_layout(self, layout: str) -> MoEWeights:
        """The same experts with codes in another kernel layout (see ``quartet.kernels.mxfp4.layout``)."""
        from quartet.kernels.mxfp4.layout import to_layout

        return MoEWeights(to_layout(self.glu, layout), to_layout(self.linear, layout), to_layout(self.down, layout),
                          self.glu_bias, self.linear_bias, self.down_bias)

    def to(self, device: torch.device | str) -> MoEWeights:
        move = lambda b: None if b is None else b.to(device)  # noqa: E731
        return MoEWeights(self.glu.to(device), self.linear.to(device), self.down.to(device),
                          move(self.glu_bias), move(self.linear_bias), move(self.down_bias))


@dataclass(frozen=True, slots=True)
class ExpertGroups:
    """(token, slot) pairs sorted by expert, cut into tiles of at most ``block`` rows of one expert.

    ``order[r]`` is the pair index ``t * k + j`` at sorted row ``r``. Tile ``i`` covers rows
    ``[tile_start[i], tile_end[i])`` of expert ``tile_expert[i]``; tiles past the real count
    are empty (start == end). ``expert_end[e]`` is one past expert ``e``'s last sorted row
    (the group offsets a grouped GEMM takes). Built with device ops only, so no host sync
    and graph-safe.
    """

    order: torch.Tensor
    tile_expert: torch.Tensor
    tile_start: torch.Tensor
    tile_end: torch.Tensor
    expert_end: torch.Tensor
    block: int

    @property
    def num_tiles(self) -> int:
        return int(self.tile_expert.numel())


# Up to this many pairs, CUDA (and interpreter) calls group in one Triton launch
# (``moe_grouping.py``); its single program walks the pairs in chunks, so past a few thousand
# the torch version's parallel sort wins back its launches (not measured: a guess).
TRITON_GROUPING_MAX_PAIRS = 4096


def max_tiles(pairs: int, num_experts: int, block: int) -> int:
    """Tiles ``group_by_expert`` returns: every non-empty expert wastes at most one partial tile."""
    return max(1, min(pairs, pairs // block + num_experts))


def group_by_expert(ids: torch.Tensor, num_experts: int, block: int, *, impl: str = "auto") -> ExpertGroups:
    """Sort the ``ids[T, k]`` pairs by expert (stable) and cut them into tiles of ``block`` rows.

    ``impl``: "triton" (one launch, ``moe_grouping.py``), "torch" (``group_by_expert_torch``),
    or "auto": Triton where it can launch, up to ``TRITON_GROUPING_MAX_PAIRS`` pairs.
    """
    from quartet.kernels.mxfp4._env import can_launch

    if impl == "auto":
        impl = "triton" if can_launch(ids) and ids.numel() <= TRITON_GROUPING_MAX_PAIRS else "torch"
    if impl == "torch":
        return group_by_expert_torch(ids, num_experts, block)
    if impl != "triton":
        raise ValueError(f"impl must be 'auto', 'triton' or 'torch', got {impl!r}")
    from quartet.kernels.mxfp4.moe_grouping import group_by_expert_triton

    out = group_by_expert_triton(ids, num_experts, block, max_tiles(ids.numel(), num_experts, block))
    return ExpertGroups(*out, block)


def group_by_expert_torch(ids: torch.Tensor, num_experts: int, block: int) -> ExpertGroups:
    """The reference grouping, in torch ops (any device)."""
    flat = ids.reshape(-1).long()
    pairs = flat.numel()
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(num_experts, dtype=torch.long, device=ids.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    seg_end = torch.cumsum(counts, 0)
    seg_start = seg_end - counts
    tiles = (counts + block - 1) // block
    tiles_end = torch.cumsum(tiles, 0)
    tiles_first = tiles_end - tiles
    # Every non-empty expert wastes at most one partial tile, and no tile is empty of rows.
    i = torch.arange(max_tiles(pairs, num_experts, block), device=ids.device)
    expert = torch.searchsorted(tiles_end, i, right=True)
    valid = expert < num_experts
    expert = expert.clamp(max=num_experts - 1)
    start = seg_start[expert] + (i - tiles_first[expert]) * block
    end = torch.minimum(start + block, seg_end[expert])
    end = torch.where(valid, end, start)
    as32 = lambda t: t.to(torch.int32).contiguous()  # noqa: E731
    return ExpertGroups(as32(order), as32(expert), as32(start), as32(end), as32(seg_end), block)
