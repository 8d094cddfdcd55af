"""Prefill of one fresh prompt through CUDA graphs: one captured forward per padded prompt length.

An eager forward of a 24-layer model launches about a thousand kernels, and on an
H100 their Python and launch overhead (about 30 ms) outweighed the GPU work of a
128-token prompt several times over. The time to first token of a prompt that
arrives alone on an idle engine is that forward, so it is worth a graph: the
prompt is padded to its bucket (16, 32, 64, ... tokens) and the captured forward
replays.

Padding tokens sit after the prompt (positions T .. bucket - 1), so causal
attention keeps them out of every real token's view. Their K/V go to the scratch
block the decode graphs reserve (the block manager never hands it out), and the
block-table entries past the prompt point there too; whatever they compute is
discarded. The logits come from the last real token, picked on the device.

Only a step that is exactly one prompt from position 0 (no cached prefix, no
other sequence) takes this path; anything else runs eagerly.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from quartet.services.engine.runner.cuda_graphs import Staging, capture_graph
from quartet.services.engine.runner.kv_cache import KVCache
from quartet.services.engine.layers.attention import AttentionMetadata

log = logging.getLogger(__name__)


def prompt_buckets(max_tokens: int, smallest: int = 16) -> list[int]:
    """Powers of two from ``smallest`` up to the first that holds ``max_tokens``."""
    buckets = [smallest]
    while buckets[-1] < max_tokens:
        buckets.append(buckets[-1] * 2)
    return buckets


class PrefillGraphs:
    def __init__(
        self, model: nn.Module, cache: KVCache, *, scratch_block: int, max_tokens: int, pool: object, capture: bool = True
    ) -> None:
        self.model = model
        self.block_size = cache.block_size
        self.scratch_block = scratch_block
        self.buckets = prompt_buckets(max_tokens, smallest=max(16, cache.block_size))
        self.capture = capture
        self._pool = pool
        size, device = self.buckets[-1], cache.device
        self._input_ids = torch.zeros(size, dtype=torch.long, device=device)
        self._positions = torch.arange(size, dtype=torch.long, device=device)
        self._slots = torch.zeros(size, dtype=torch.long, device=device)
        self._table = torch.full((1, size // self.block_size), scratch_block, dtype=torch.long, device=device)
        self._seq_lens = torch.zeros(1, dtype=torch.long, device=device)
        self._last = torch.zeros(1, dtype=torch.long, device=device)
        self._staging = Staging(3 * size + 2, device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._failed: set[int] = set()
        self._metas: dict[int, AttentionMetadata] = {}

    def bucket_for(self, num_tokens: int) -> int | None:
        bucket = next((b for b in self.buckets if b >= num_tokens), None)
        return None if bucket is None or bucket in self._failed else bucket

    def run(self, token_ids: list[int], block_table: list[int]) -> torch.Tensor:
        """Logits [1, V] (fp32) of the prompt's last token; its K/V written to ``block_table``'s blocks."""
        n = len(token_ids)
        bucket = self.bucket_for(n)
        assert bucket is not None
        self._load(token_ids, block_table, bucket)
        if not self.capture:  # CPU tests: the same padded static buffers, run eagerly
            return self._forward(self._meta(bucket), bucket).float()
        entry = self._graphs.get(bucket)
        if entry is None:
            entry = self._capture_or_fail(bucket)
            if entry is None:
                self._load(token_ids, block_table, bucket)
                return self._forward(self._meta(bucket), bucket).float()
        graph, logits = entry
        graph.replay()
        return logits.float()

    def capture_all(self) -> int:
        """Capture every bucket now (largest first, so smaller graphs reuse the pool); how many were captured."""
        if not self.capture:
            return 0
        started, count = time.perf_counter(), 0
        for bucket in sorted(self.buckets, reverse=True):
            if bucket not in self._graphs and bucket not in self._failed:
                self._load([0], [self.scratch_block], bucket)
                count += self._capture_or_fail(bucket) is not None
        log.info("prefill graphs captured", extra={"graphs": count, "seconds": round(time.perf_counter() - started, 2)})
        return count

    def _capture_or_fail(self, bucket: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor] | None:
        # Kept for the graph's lifetime: layers cache device tensors on it during warm-up (the Triton
        # prefill's tile plan) that the captured kernels read; freeing them left replays reading freed
        # memory (an illegal-address fault on the H100).
        meta = self._metas.setdefault(bucket, self._meta(bucket))
        try:
            entry = capture_graph(lambda: self._forward(meta, bucket), self._pool)
        except Exception:  # noqa: BLE001 - that length runs eagerly from now on
            log.warning("prefill graph capture failed; prompts of this length run eagerly", extra={"tokens": bucket})
            self._failed.add(bucket)
            torch.cuda.synchronize()
            return None
        self._graphs[bucket] = entry
        log.info("prefill graph captured", extra={"tokens": bucket})
        return entry

    def _load(self, token_ids: list[int], block_table: list[int], bucket: int) -> None:
        """One host-to-device copy of the prompt, its slots and table; padding as the module docstring says."""
        n, size, width = len(token_ids), self.block_size, bucket // self.block_size
        table = list(block_table[: -(-n // size)])
        table += [self.scratch_block] * (width - len(table))
        slots = [table[p // size] * size + p % size for p in range(n)]
        slots += [self.scratch_block * size + p % size for p in range(n, bucket)]
        # seq_lens says ``bucket``, as the Python lengths do: the pads are part of the step's one "prompt".
        device = self._staging.upload([*token_ids, *([0] * (bucket - n)), *slots, *table, bucket, n - 1])
        self._input_ids[:bucket].copy_(device[:bucket])
        self._slots[:bucket].copy_(device[bucket : 2 * bucket])
        self._table[0, :width].copy_(device[2 * bucket : 2 * bucket + width])
        self._seq_lens.copy_(device[-2:-1])
        self._last.copy_(device[-1:])

    def _meta(self, bucket: int) -> AttentionMetadata:
        return AttentionMetadata(
            block_size=self.block_size,
            num_prefills=1,
            query_lens=[bucket],
            seq_lens=[bucket],
            query_starts=[0],
            positions=self._positions[:bucket],
            slot_mapping=self._slots[:bucket],
            block_tables=self._table[:, : bucket // self.block_size],
            seq_lens_tensor=self._seq_lens,
        )

    def _forward(self, meta: AttentionMetadata, bucket: int) -> torch.Tensor:
        with torch.inference_mode():
            hidden = self.model(self._input_ids[:bucket], meta.positions, meta)
            return self.model.compute_logits(hidden.index_select(0, self._last))
