"""Deterministic inputs, generated once from the manifest's seed and cached on disk.

Weights are shared by every ``m`` of a case (``weights.pt``); activations are per ``m``
(``x-m<m>.pt``). Files are keyed by device type too, since a CUDA generator and a CPU
generator draw different numbers from one seed. Default folder:
``benchmarks/harness/.inputs`` (git-ignored), or ``$QUARTET_KERNEL_INPUTS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.harness.case import Case, Inputs

DEFAULT_DIR = Path(__file__).parent / ".inputs"


def inputs_dir() -> Path:
    return Path(os.environ.get("QUARTET_KERNEL_INPUTS", DEFAULT_DIR))


def _cached(path: Path, device: torch.device, build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if path.is_file():
        return torch.load(path, map_location=device, weights_only=True)
    tensors = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.detach() for k, v in tensors.items()}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache file
    return tensors


def case_inputs(case: Case, m: int, device: torch.device, root: Path | None = None) -> Inputs:
    """The case's inputs at ``m`` rows on ``device``: from the cache, or generated and cached."""
    folder = (root or inputs_dir()) / case.name
    seed = case.manifest.seed

    def generator(offset: int) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed * 100_003 + offset)
        return gen

    weights = _cached(folder / f"weights-seed{seed}-{device.type}.pt", device,
                      lambda: case.model.make_weights(generator(0), device))
    acts = _cached(folder / f"x-m{m}-seed{seed}-{device.type}.pt", device,
                   lambda: case.model.make_activations(m, generator(1 + m), device))
    return case.model.prepare({**weights, **acts})
