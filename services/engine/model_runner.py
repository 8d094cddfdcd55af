"""The one interface the engine loop drives a model through, and the factory that picks a backend.

Each step the scheduler decides which sequences run and how many of their
tokens (a prompt chunk, or one token to decode); the runner computes them,
writing their KV into the blocks the block manager gave them, and returns
next-token logits for the sequences whose chunk reached their last token.
Sampling is not its job. Only the engine loop's worker thread calls a runner,
so runners need no locks.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from services.engine.scheduler import ScheduledSequence

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    backend: str
    architecture: str
    vocab_size: int
    context_length: int
    device: str
    dtype: str


@dataclass(frozen=True, slots=True)
class KVLayout:
    """What the block manager needs to know about the runner's KV memory."""

    num_blocks: int
    block_size: int
    enable_prefix_caching: bool


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Settings every backend reads (from EngineSettings); backends ignore what does not apply to them."""

    device: str = "cpu"
    dtype: str = "float32"
    max_model_len: int = 0
    max_num_seqs: int = 8
    block_size: int = 16
    num_kv_blocks: int = 0  # 0: size from memory
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True
    cuda_graphs: bool = False
    weight_format: str = "auto"  # ENGINE_WEIGHT_FORMAT: dense linears as mxfp4 or bf16 (models/loader.py)


class ModelRunner(ABC):
    """Compute scheduled tokens into the paged KV cache; return next-token logits."""

    info: RunnerInfo
    max_num_seqs: int
    kv_layout: KVLayout

    @abstractmethod
    def execute(self, batch: Sequence[ScheduledSequence]) -> torch.Tensor:
        """Run one step; logits [N, V] (float32) for the items with ``needs_logits``, in batch order.

        Items come multi-token chunks first, then one-token decodes (the scheduler's order).
        """

    def release(self, seq_id: int) -> None:
        """A sequence finished or was preempted: drop any state kept outside the block pool (default: none)."""

    def close(self) -> None:
        """Free what the runner holds; the default needs nothing."""


def read_hf_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


def create_runner(backend: str, model_dir: Path, options: RunnerOptions) -> ModelRunner:
    """Build the runner ENGINE names, for the model in ``model_dir``."""
    if backend == "native":
        from services.engine.native_runner import NativeRunner

        return NativeRunner.load(model_dir, options)
    if backend == "transformers":
        from services.engine.hf_runner import TransformersRunner

        return TransformersRunner.load(model_dir, options)
    raise ValueError(f"unknown backend {backend!r}; use native or transformers")


def context_length(config: dict, max_model_len: int) -> int:
    """The model's context, capped by ENGINE_MAX_MODEL_LEN when that is set (0 = the model's own)."""
    native = int(config.get("max_position_embeddings") or 2048)
    return min(native, max_model_len) if max_model_len else native
