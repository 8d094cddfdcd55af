"""The factory that picks a model runner backend; the interface itself is in ``runner_base``."""

from __future__ import annotations

from pathlib import Path

from quartet.services.engine.runner.hf import TransformersRunner
from quartet.services.engine.runner.native import NativeRunner
from quartet.services.engine.runner.base import ModelRunner, RunnerOptions


def create_runner(backend: str, model_dir: Path, options: RunnerOptions) -> ModelRunner:
    """Build the runner ENGINE names, for the model in ``model_dir``."""
    if backend == "native":
        return NativeRunner.load(model_dir, options)
    if backend == "transformers":
        return TransformersRunner.load(model_dir, options)
    raise ValueError(f"unknown backend {backend!r}; use native or transformers")
