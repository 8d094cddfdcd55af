"""Checkpoint tensors by name, read lazily from a directory of safetensors shards.

A model's loader asks for each tensor as it builds a layer, so only one layer's
worth of host memory is in flight and MXFP4 ``*_blocks``/``*_scales`` reach the
device as the uint8 they are on disk (never widened). ``DictWeights`` serves the
same interface from memory (random benchmark weights, tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import torch

from quartet.kernels import MXFP4Tensor, load_mxfp4


class Weights(Protocol):
    """What a model's ``load_weights`` reads from: tensors by checkpoint name."""

    def get(self, name: str) -> torch.Tensor:
        """The tensor called ``name`` (on the CPU); KeyError if the checkpoint has none."""
        ...

    def __contains__(self, name: object) -> bool: ...

    def names(self) -> Iterator[str]: ...


def mxfp4(weights: Weights, name: str) -> MXFP4Tensor:
    """``name`` stored as MXFP4: ``name_blocks``/``name_scales`` (HF) or ``name.blocks``/``.scales`` (original)."""
    return load_mxfp4(weights.get, name)


class DictWeights:
    """Weights held in a mapping (random weights, converted checkpoints, tests)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._tensors = tensors

    def get(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def names(self) -> Iterator[str]:
        return iter(self._tensors)


class SafetensorsWeights:
    """The ``*.safetensors`` files of a Hugging Face model directory, opened once and read per tensor.

    Shards are found through ``model.safetensors.index.json`` when present, else by globbing.
    Tensors come back on the CPU in their stored dtype (bf16 stays bf16, uint8 stays uint8).
    """

    def __init__(self, directory: Path) -> None:
        from safetensors import safe_open

        self.directory = Path(directory)
        files = _shard_files(self.directory)
        if not files:
            raise FileNotFoundError(f"no *.safetensors files in {self.directory}")
        self._handles = {path: safe_open(str(path), framework="pt", device="cpu") for path in files}
        self._where: dict[str, Path] = {}
        for path, handle in self._handles.items():
            for key in handle.keys():
                self._where[key] = path

    def get(self, name: str) -> torch.Tensor:
        path = self._where.get(name)
        if path is None:
            raise KeyError(f"{name!r} is not in the checkpoint at {self.directory}")
        return self._handles[path].get_tensor(name)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def names(self) -> Iterator[str]:
        return iter(self._where)

    def num_bytes(self) -> int:
        return sum(path.stat().st_size for path in self._handles)


def _shard_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    return sorted(directory.glob("*.safetensors"))
