"""The one interface the engine loop drives a model through, and the types every backend shares.

Each step the scheduler decides which sequences run and how many of their
tokens (a prompt chunk, or one token to decode); the runner computes them,
writing their KV into the blocks the block manager gave them, and returns
next-token logits for the sequences whose chunk reached their last token.
Sampling is not its job. Only the engine loop's worker thread calls a runner,
so runners need no locks.

The factory that picks a backend (``model_runner.create_runner``) sits above the
backends; this module sits below them, so no backend imports its own factory.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from quartet.services.engine.sched.scheduler import ScheduledSequence

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


class LaunchedStep:
    """A step the device may still be computing: its rows' next-token logits, or their argmax tokens.

    ``rows`` maps each sequence that needs a next token to its row. A step launched with
    ``greedy=True`` picks its tokens on the device (``device_tokens``), so the next step can
    read them there without a round trip to the host (asynchronous scheduling).
    """

    def __init__(
        self,
        rows: dict[int, int],
        *,
        logits: torch.Tensor | None = None,
        device_tokens: torch.Tensor | None = None,
        host_tokens: torch.Tensor | None = None,
        done: torch.cuda.Event | None = None,
    ) -> None:
        self.rows = rows
        self.device_tokens = device_tokens
        self._logits = logits
        self._host_tokens = host_tokens
        self._done = done

    def wait(self) -> None:
        """Block until the device finished the step; ``Event.synchronize`` releases the GIL meanwhile."""
        if self._done is not None:
            self._done.synchronize()
            self._done = None

    def logits(self) -> torch.Tensor:
        """fp32 logits [N, V] of the rows, in row order (only for steps launched without ``greedy``)."""
        if self._logits is None:
            raise RuntimeError("this step picked its tokens on the device; it kept no logits")
        self.wait()
        return self._logits

    def token_ids(self) -> list[int]:
        """The argmax token of each row, in row order."""
        self.wait()
        if self._host_tokens is not None:
            return self._host_tokens.tolist()
        if self.device_tokens is not None:
            return self.device_tokens.tolist()
        return self.logits().argmax(dim=-1).tolist()


class ModelRunner(ABC):
    """Compute scheduled tokens into the paged KV cache; return next-token logits."""

    info: RunnerInfo
    max_num_seqs: int
    kv_layout: KVLayout
    #: ``launch`` takes ``prev``: inputs may be tokens a step still in flight picks on the device.
    supports_pending_tokens: bool = False

    @abstractmethod
    def execute(self, batch: Sequence[ScheduledSequence]) -> torch.Tensor:
        """Run one step; logits [N, V] (float32) for the items with ``needs_logits``, in batch order.

        Items come multi-token chunks first, then one-token decodes (the scheduler's order).
        """

    def launch(
        self, batch: Sequence[ScheduledSequence], *, greedy: bool = False, prev: LaunchedStep | None = None
    ) -> LaunchedStep:
        """Start a step; its results come from the returned handle (by default: ``execute``, finished).

        ``greedy``: every row takes its argmax. ``prev``: the step in flight whose device tokens some of
        this step's inputs are (only where ``supports_pending_tokens``).
        """
        if prev is not None:
            raise RuntimeError(f"the {self.info.backend} backend cannot read tokens of a step in flight")
        rows = {item.sequence.seq_id: i for i, item in enumerate(item for item in batch if item.needs_logits)}
        return LaunchedStep(rows, logits=self.execute(batch))

    def release(self, seq_id: int) -> None:
        """A sequence finished or was preempted: drop any state kept outside the block pool (default: none)."""

    def close(self) -> None:
        """Free what the runner holds; the default needs nothing."""


def read_hf_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


def context_length(config: dict, max_model_len: int) -> int:
    """The model's context, capped by ENGINE_MAX_MODEL_LEN when that is set (0 = the model's own)."""
    native = int(config.get("max_position_embeddings") or 2048)
    return min(native, max_model_len) if max_model_len else native
