"""Launch plumbing of the CUDA-core ("fma8") decode kernels: configs, grids, autotuning.

Their shape: a program owns one K slice (``KW`` code words of every row, so ``8 * KW``
activations, loaded once into registers) and streams ``CHUNKS`` chunks of ``BN`` weight
rows through it, a whole MX block (16 bytes) per thread and load (``_decode.py``); each
chunk's partial is published for the split-K fix-up (the last of a chunk's K slices
finishes it), or stored directly when K is one slice.

On CUDA, ``triton.autotune`` picks among ``FMA_CONFIGS`` once per (M, N, K) on first use
(warm up before capturing CUDA graphs); the interpreter uses ``fma_default``. The MoE decode
(``moe_decode.py``) has its own candidates and fixed defaults (``moe_fma_defaults``).

The tensor-core decode (``_dec2_*.py``) launches with an ``MmaConfig``, never autotuned: fixed
``moe_mma_defaults`` (from ``MOE_MMA_MIN_TOKENS`` tokens) and ``_dec2_gemv.gemv_mma_default``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import triton

from quartet.kernels.mxfp4._env import is_interpreter


@dataclass(frozen=True, slots=True)
class FmaConfig:
    """``bn`` weight rows a chunk, ``kw`` code words a K slice (``kw / 4`` MX blocks, a power of two)."""

    bn: int = 32
    kw: int = 128
    chunks: int = 4
    num_warps: int = 4
    num_stages: int = 1

    def __post_init__(self) -> None:
        if self.kw < 4 or self.kw & (self.kw - 1):
            raise ValueError(f"kw={self.kw} must be a power of two >= 4 (whole MX blocks of 4 words)")
        if self.bn < 1 or self.bn & (self.bn - 1):
            raise ValueError(f"bn={self.bn} must be a power of two")

    def meta(self) -> dict:
        return {"BN": self.bn, "KW": self.kw, "CHUNKS": self.chunks}


@dataclass(frozen=True, slots=True)
class MmaConfig:
    """Launch of the tensor-core decode (``_dec2_mma.py``): a program multiplies two tiles (lo,
    hi) of ``rows = 8 * num_warps * rpt`` weight rows each (``rpt`` rows a thread, 1 or 2) over a
    K slice of ``groups`` groups of 4 MX blocks, loading ``prefetch`` groups ahead of the math."""

    num_warps: int = 4
    rpt: int = 1
    groups: int = 4
    prefetch: int = 1
    hint: int = 0  # weight-load cache hints (_dec2_mma._HINTS): 1 = read-only, 256-byte L2 fetches
    num_stages: int = 1
    max_regs: int | None = None  # ptxas register cap (Triton's ``maxnreg``): occupancy against loads in flight
    # Programmatic dependent launch (Hopper): the launch's programs may be placed on the SMs while the
    # previous kernel of the stream drains; they wait (``griddepcontrol.wait``) before reading anything
    # another kernel wrote and before writing. Ignored by the interpreter.
    pdl: bool = False

    def __post_init__(self) -> None:
        if self.num_warps not in (1, 2, 4, 8):
            raise ValueError(f"num_warps={self.num_warps} must be 1, 2, 4 or 8")
        if self.rpt not in (1, 2):
            raise ValueError(f"rpt={self.rpt} must be 1 or 2 (rows a thread)")
        if self.groups < 1:
            raise ValueError(f"groups={self.groups} must be >= 1")
        if self.prefetch not in (1, 2):
            raise ValueError(f"prefetch={self.prefetch} must be 1 or 2 (groups loaded ahead)")

    @property
    def rows(self) -> int:
        return 8 * self.num_warps * self.rpt

    def meta(self) -> dict:
        return {"NW": self.num_warps, "RPT": self.rpt, "GROUPS": self.groups, "PF": self.prefetch, "HINT": self.hint,
                "PDL": int(self.pdl and not is_interpreter())}

    def slices(self, k_blocks: int) -> int:
        return triton.cdiv(k_blocks, 4 * self.groups)

    def launch_options(self) -> dict:
        opts = {"num_warps": self.num_warps, "num_stages": self.num_stages}
        if self.max_regs is not None:
            opts["maxnreg"] = self.max_regs
        if self.pdl and not is_interpreter():
            opts["launch_pdl"] = True
        return opts


# (BN, KW, CHUNKS, warps, stages). A warp spans 32 blocks (KW 128) or fewer along K. H100 sweeps
# (docs/perf-log/kernels-mxfp4.md): on 2880-wide layers one K slice of the whole row (KW 512, no split-K)
# with 4 to 8 rows a program won; 28672x8192 liked 64-row chunks, two a program (75.8 us).
_GRID = [(64, 128, 2, 4, 1), (32, 128, 4, 4, 1), (16, 128, 8, 4, 1), (16, 128, 4, 2, 1), (32, 128, 8, 4, 1), (64, 128, 4, 8, 1),
         (32, 64, 8, 4, 1), (8, 512, 8, 4, 1), (4, 512, 1, 4, 1), (8, 512, 1, 4, 1), (16, 64, 1, 2, 1),
         (16, 128, 1, 4, 1), (8, 128, 2, 4, 1)]
FMA_CONFIGS = [triton.Config({"BN": bn, "KW": kw, "CHUNKS": ch}, num_warps=w, num_stages=st)
               for bn, kw, ch, w, st in _GRID]


# The MoE decode kernels (moe_decode.py) at gpt-oss shapes (2880-wide, 4 experts a token): the
# autotuner's candidates, the best of the H100 sweep at 1 to 8 tokens (docs/perf-log/kernels-mxfp4.md,
# run E: every config there was within 0.9-1.2x of these).
MOE_GATE_UP_GRID = [(4, 512, 1, 4, 1), (16, 64, 1, 2, 1), (16, 128, 1, 4, 1), (64, 128, 1, 8, 1),
                    (32, 128, 1, 4, 1)]
MOE_DOWN_GRID = [(16, 128, 1, 4, 1), (32, 128, 1, 4, 1), (16, 64, 1, 2, 1), (16, 128, 2, 4, 1), (8, 512, 1, 4, 1)]
MOE_GRID = sorted(set(MOE_GATE_UP_GRID + MOE_DOWN_GRID))  # what the sweep tries for both kernels


def as_configs(grid: list[tuple[int, int, int, int, int]]) -> list[triton.Config]:
    return [triton.Config({"BN": bn, "KW": kw, "CHUNKS": ch}, num_warps=w, num_stages=st) for bn, kw, ch, w, st in grid]


def moe_fma_defaults(tokens: int, k_words_h: int, k_words_i: int) -> tuple[FmaConfig, FmaConfig]:
    """Fixed (gate_up, down) configs of the MoE decode when autotuning is off (the engine's
    default). H100 sweep, gpt-oss-20b (run E): one token liked whole-row K slices of 4 rows
    for gate_up (no split-K); more tokens 16-row, 16-block slices. Down liked 16 rows of
    32-block slices up to 2 tokens and 32 rows from 4. The whole-row slice is sized to K so
    small test shapes stay small."""
    whole = max(4, min(512, triton.next_power_of_2(k_words_h)))
    gate_up = FmaConfig(bn=4, kw=whole, chunks=1) if tokens == 1 else FmaConfig(bn=16, kw=64, chunks=1, num_warps=2)
    down = FmaConfig(bn=16 if tokens <= 2 else 32, kw=min(128, max(4, triton.next_power_of_2(k_words_i))), chunks=1)
    return gate_up, down


# From this many tokens the MoE decode's default is the tensor-core kernels (_dec2_moe.py). H100 runs F2/F3
# (docs/perf-log/kernels-mxfp4.md), fixed configs: 4 tokens 115.1-115.8 us against the CUDA-core 117.1-121.4, 8 tokens
# 213.4-216.4 against 223.9-228.8, 2 tokens 65.3-66.8 against 65.1-68.0; at 1 token the CUDA-core kernels
# stayed ahead (37.9-39.1 against 39.8-40.4 us).
MOE_MMA_MIN_TOKENS = 2
# On "fma8t" experts the tensor-core decode won at one token too (run H: 36.1 against the CUDA cores' 41.6 us).
MOE_MMA_MIN_TOKENS_TILED = 1


def moe_mma_defaults(tokens: int, k_blocks_h: int, k_blocks_i: int, tiled: bool = False) -> tuple[MmaConfig, MmaConfig]:
    """Fixed (gate_up, down) launches of the tensor-core MoE decode (``_dec2_moe.py``). H100 sweeps
    F1-F3 (docs/perf-log/kernels-mxfp4.md): K slices of 3 groups (12 blocks), two groups loaded ahead with
    the 256-byte L2 fetch hint; gate_up two rows a thread (2 warps at 1 token, 4 above), down 4
    warps of one row. On "fma8t" experts (``tiled``, kernels run I) one group ahead, 4 warps of
    two rows in both launches (run I3, both with PDL: 34.1 against 34.3 us at 1 token, 55.0 against
    56.8 at 2, 95.0 against 102.7 at 4, 176.8 against 194.5 at 8 for gate_up one row a thread),
    launched with PDL (the down launch's programs are placed during gate_up's tail: 0.6-0.9 us at
    1-2 tokens, run I10). At one token on "fma8t", slices of 5 groups (runs J6, J8): a launch of short
    programs that ends in a partial wave pays for the whole wave, and gpt-oss's layer at one token then
    makes 5 x 45 x 4 = 900 gate_up programs and 4 x 5 x 23 = 460 down programs, each within one wave
    of the H100's 132 SMs at the 7 and 4 programs an SM their registers allow (run I8), where slices
    of 3 groups made 1.56 and 1.39 waves: 31.3-31.8 against 33.0-33.8 us. From two tokens 3 groups
    stayed as fast or faster (J7). Capped at the whole row so small test shapes stay small."""
    slice_groups = 5 if tiled and tokens == 1 else 3
    gu = min(slice_groups, triton.cdiv(k_blocks_h, 4))
    dn = min(slice_groups, triton.cdiv(k_blocks_i, 4))
    if tiled:
        return (MmaConfig(num_warps=4, rpt=2, groups=gu, prefetch=1, hint=1, pdl=True),
                MmaConfig(num_warps=4, rpt=2, groups=dn, prefetch=1, hint=1, pdl=True))
    gate_up = MmaConfig(num_warps=2 if tokens == 1 else 4, rpt=2, groups=gu, prefetch=2, hint=1)
    down = MmaConfig(num_warps=4, rpt=1, groups=dn, prefetch=2, hint=1)
    return gate_up, down


def fma_default(n_rows: int, k_words: int, sms: int, m: int = 1) -> FmaConfig:
    """A fixed choice (no autotuning). Rows up to 512 words (4096 weights) take one K slice, so
    no split-K, with 8 rows a chunk; longer rows take 128-word (32-block) slices, 16 rows a
    chunk, and enough chunks a program for about 4 programs an SM."""
    if k_words <= 512:
        return FmaConfig(bn=8, kw=max(4, triton.next_power_of_2(k_words)), chunks=1)
    slices = triton.cdiv(k_words, 128)
    chunks = triton.cdiv(n_rows, 16)
    per_program = max(1, min(16, chunks * slices // (4 * sms)))
    return FmaConfig(bn=16, kw=128, chunks=triton.next_power_of_2(per_program) if per_program > 1 else 1,
                     num_warps=4)


def fma_grid(n_rows: int, k_words: int, extra: int = 1):
    """Grid function for a kernel launched with either explicit meta or autotuned meta."""
    def grid(meta: dict) -> tuple[int, int, int]:
        chunks = triton.cdiv(n_rows, meta["BN"])
        return triton.cdiv(chunks, meta["CHUNKS"]), triton.cdiv(k_words, meta["KW"]), extra
    return grid


def max_slices(k_words: int, cfg: FmaConfig | None = None, grid: list | None = None) -> int:
    """K slices of ``cfg``, or the most over every autotuned config of ``grid`` (default: the
    GEMV's; sizes the split-K workspace)."""
    kw = cfg.kw if cfg is not None else min(kw for _, kw, _, _, _ in (grid or _GRID))
    return triton.cdiv(k_words, kw)


def max_chunks(n_rows: int, cfg: FmaConfig | None = None, grid: list | None = None) -> int:
    """Row chunks of ``cfg``, or the most over every autotuned config of ``grid`` (sizes the counters)."""
    bn = cfg.bn if cfg is not None else min(bn for bn, _, _, _, _ in (grid or _GRID))
    return triton.cdiv(n_rows, bn)


def use_autotune() -> bool:
    """Autotune on CUDA unless ``QUARTET_KERNELS_AUTOTUNE=0`` (the tests pin configs to stay fast)."""
    return not is_interpreter() and os.environ.get("QUARTET_KERNELS_AUTOTUNE", "1") != "0"
