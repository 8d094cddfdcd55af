"""The one interface the engine loop drives a model through, and the factory that picks a backend.

Only the engine loop's worker thread calls a runner, so runners need no locks.
A runner owns the model and its KV state per sequence; sampling is not its job.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    backend: str
    architecture: str
    vocab_size: int
    context_length: int
    device: str
    dtype: str


class ModelRunner(ABC):
    """Prefill a sequence, decode a batch of sequences by one token, release a sequence."""

    info: RunnerInfo
    max_num_seqs: int

    @abstractmethod
    def prefill(self, seq_id: int, token_ids: Sequence[int]) -> torch.Tensor:
        """Start ``seq_id`` with its prompt; return the next-token logits [V] (float32)."""

    def prefill_many(self, seq_ids: Sequence[int], prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Start several sequences; return their next-token logits [B, V]. Runners that can pack override it."""
        return torch.stack([self.prefill(s, p) for s, p in zip(seq_ids, prompts)])

    @abstractmethod
    def decode(self, seq_ids: Sequence[int], token_ids: Sequence[int]) -> torch.Tensor:
        """Feed one token to each started sequence; return next-token logits [B, V] in the same order."""

    @abstractmethod
    def release(self, seq_id: int) -> None:
        """Forget a sequence's state (finished or aborted); unknown ids are ignored."""

    @property
    @abstractmethod
    def num_active(self) -> int:
        """Sequences holding state now."""

    def close(self) -> None:
        """Free what the runner holds; the default needs nothing."""


def read_hf_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


def create_runner(
    backend: str, model_dir: Path, *, device: str, dtype: str, max_model_len: int, max_num_seqs: int
) -> ModelRunner:
    """Build the runner ENGINE names, for the model in ``model_dir``."""
    if backend == "native":
        from services.engine.native_runner import NativeRunner

        return NativeRunner.load(
            model_dir, device=device, dtype=dtype, max_model_len=max_model_len, max_num_seqs=max_num_seqs
        )
    if backend == "transformers":
        from services.engine.hf_runner import TransformersRunner

        return TransformersRunner.load(
            model_dir, device=device, dtype=dtype, max_model_len=max_model_len, max_num_seqs=max_num_seqs
        )
    raise ValueError(f"unknown backend {backend!r}; use native or transformers")


def context_length(config: dict, max_model_len: int) -> int:
    """The model's context, capped by ENGINE_MAX_MODEL_LEN when that is set (0 = the model's own)."""
    native = int(config.get("max_position_embeddings") or 2048)
    return min(native, max_model_len) if max_model_len else native
