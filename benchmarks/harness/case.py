"""Cases: ``cases/<name>/manifest.yaml`` (what to measure) + ``model.py`` (how to build and run it).

A manifest names the op, its shape, the activation row counts ``m`` to sweep, a seed, the
parity tolerance and optional targets. ``model.py`` defines ``Model(manifest)`` with the
hooks in ``CaseModel``; most cases reuse a model from ``benchmarks.harness.models``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml

CASES_DIR = Path(__file__).parent / "cases"

Inputs = dict[str, Any]
Forward = Callable[[Inputs], torch.Tensor]


@dataclass(frozen=True, slots=True)
class Target:
    """A bar a variant must clear at one ``m``: ``metric`` is a metrics.json field."""

    m: int
    metric: str
    min: float | None = None
    max: float | None = None
    variant: str = "best"
    note: str = ""


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    op: str
    shape: dict[str, int]
    m: tuple[int, ...]
    seed: int = 0
    tolerance: float = 1e-2
    description: str = ""
    targets: tuple[Target, ...] = field(default_factory=tuple)

    @classmethod
    def from_yaml(cls, path: Path) -> Manifest:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or "name" not in raw or "op" not in raw:
            raise ValueError(f"{path}: a manifest needs at least 'name' and 'op'")
        targets = tuple(Target(**t) for t in raw.get("targets", []))
        return cls(
            name=raw["name"], op=raw["op"], shape=dict(raw.get("shape", {})), m=tuple(raw.get("m", [1])),
            seed=int(raw.get("seed", 0)), tolerance=float(raw.get("tolerance", 1e-2)),
            description=raw.get("description", ""), targets=targets,
        )


@dataclass(frozen=True, slots=True)
class Work:
    """What one call must move and compute, for GB/s and TFLOP/s."""

    bytes_read: int
    bytes_written: int
    flops: int

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


class CaseModel(Protocol):
    """The hooks a case's ``model.py`` provides (as class ``Model``)."""

    def make_weights(self, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]: ...

    def make_activations(self, m: int, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]: ...

    def prepare(self, tensors: dict[str, torch.Tensor]) -> Inputs: ...

    def rotate(self, inputs: Inputs, index: int) -> Inputs: ...

    def baseline(self, m: int) -> tuple[str, Forward]: ...

    def variants(self, m: int) -> dict[str, Forward]: ...

    def work(self, m: int, label: str) -> Work: ...


@dataclass(frozen=True, slots=True)
class Case:
    manifest: Manifest
    model: CaseModel
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.name


def list_cases(root: Path = CASES_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/manifest.yaml"))


def load_case(name: str, root: Path = CASES_DIR) -> Case:
    folder = root / name
    manifest_path = folder / "manifest.yaml"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no case {name!r} under {root} (have: {', '.join(list_cases(root))})")
    manifest = Manifest.from_yaml(manifest_path)
    spec = importlib.util.spec_from_file_location(f"kernels_harness_case_{name}", folder / "model.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"case {name!r} has no model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Case(manifest, module.Model(manifest), folder)
