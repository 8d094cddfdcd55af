"""Launch plumbing of the CUDA-core ("fma8") decode kernels: configs, grids, autotuning.

Their shape: a program owns one K slice (``KW`` code words of every row, so ``8 * KW``
activations, loaded once into registers) and streams ``CHUNKS`` chunks of ``BN`` weight
rows through it; each chunk's partial is published for the split-K fix-up (the last of a
chunk's K slices finishes it). Holding the activations is what keeps the loads
streaming: the first version re-loaded them for every tile and was L1-bound.

On CUDA, ``triton.autotune`` picks among ``FMA_CONFIGS`` once per (M, N, K) on first use
(warm up before capturing CUDA graphs); the interpreter uses ``fma_default``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import triton

from kernels.mxfp4._env import is_interpreter


@dataclass(frozen=True, slots=True)
class FmaConfig:
    bn: int = 64
    kw: int = 64
    chunks: int = 4
    num_warps: int = 4
    num_stages: int = 1

    def meta(self) -> dict:
        return {"BN": self.bn, "KW": self.kw, "CHUNKS": self.chunks}


# (BN, KW, CHUNKS, warps, stages): wide and narrow K slices, few and many row chunks.
_GRID = [(64, 64, 8, 4, 1), (64, 64, 4, 4, 1), (64, 64, 2, 4, 1), (64, 64, 1, 4, 1), (32, 64, 4, 4, 1),
         (128, 32, 4, 4, 1), (64, 32, 4, 4, 1), (64, 64, 4, 4, 2), (64, 64, 8, 8, 1), (32, 32, 2, 2, 1),
         (64, 32, 1, 4, 1), (128, 64, 2, 8, 1)]
FMA_CONFIGS = [triton.Config({"BN": bn, "KW": kw, "CHUNKS": ch}, num_warps=w, num_stages=st)
               for bn, kw, ch, w, st in _GRID]


def fma_default(n_rows: int, k_words: int, sms: int) -> FmaConfig:
    """A fixed choice: 64-row chunks, a 512-element K slice, chunks per program for ~4 programs/SM."""
    kw = 64 if k_words >= 64 else 32
    slices = triton.cdiv(k_words, kw)
    chunks = triton.cdiv(n_rows, 64)
    per_program = max(1, min(16, chunks * slices // (4 * sms)))
    return FmaConfig(bn=64, kw=kw, chunks=triton.next_power_of_2(per_program) if per_program > 1 else 1)


def fma_grid(n_rows: int, k_words: int, extra: int = 1):
    """Grid function for a kernel launched with either explicit meta or autotuned meta."""
    def grid(meta: dict) -> tuple[int, int, int]:
        chunks = triton.cdiv(n_rows, meta["BN"])
        return triton.cdiv(chunks, meta["CHUNKS"]), triton.cdiv(k_words, meta["KW"]), extra
    return grid


def max_slices(k_words: int, cfg: FmaConfig | None = None) -> int:
    """K slices of ``cfg``, or the most over every autotuned config (sizes the split-K workspace)."""
    kw = cfg.kw if cfg is not None else min(kw for _, kw, _, _, _ in _GRID)
    return triton.cdiv(k_words, kw)


def max_chunks(n_rows: int, cfg: FmaConfig | None = None) -> int:
    """Row chunks of ``cfg``, or the most over every autotuned config (sizes the counters)."""
    bn = cfg.bn if cfg is not None else min(bn for bn, _, _, _, _ in _GRID)
    return triton.cdiv(n_rows, bn)


def use_autotune() -> bool:
    """Autotune on CUDA unless ``QUARTET_KERNELS_AUTOTUNE=0`` (the tests pin configs to stay fast)."""
    return not is_interpreter() and os.environ.get("QUARTET_KERNELS_AUTOTUNE", "1") != "0"
