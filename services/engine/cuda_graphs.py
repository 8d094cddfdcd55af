"""Decode through CUDA graphs: one captured forward per (batch bucket, context-width bucket).

A decode step of a small batch launches hundreds of tiny kernels; replaying a
captured graph launches them as one. A graph fixes every shape and address,
so the step runs on static buffers: inputs are copied in, the batch is padded
up to its bucket (1, 2, 4, 8, then multiples of 16), and the KV gather reads a
fixed number of blocks (the longest sequence's, rounded up to a power of two).
Padded rows decode token 0 at position 0 into a scratch block that the block
manager never hands out, so they cannot touch real sequences' KV.

Graphs are captured lazily, the first time a shape is needed, into one shared
memory pool. A forward that cannot be captured (data-dependent shapes, e.g. an
MoE's expert grouping) is remembered and runs eagerly from then on.

ENGINE_CUDA_GRAPHS=1 turns it on; it is ignored on CPU. Untested on a GPU in
this repository's CI: the static-buffer path (padding, fixed width, scratch
block) is tested on CPU with capture switched off (``capture=False``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from services.engine.kv_cache import KVCache
from services.engine.layers.attention import AttentionMetadata

log = logging.getLogger(__name__)


def batch_buckets(max_batch: int) -> list[int]:
    buckets = [b for b in (1, 2, 4, 8) if b < max_batch] + list(range(16, max_batch, 16))
    return sorted(set(buckets + [max_batch]))


class DecodeGraphs:
    def __init__(self, model: nn.Module, cache: KVCache, *, max_batch: int, capture: bool = True) -> None:
        self.model = model
        self.cache = cache
        self.block_size = cache.block_size
        self.scratch_block = cache.num_blocks - 1  # reserved: the runner reports one block fewer
        self.max_blocks = cache.num_blocks - 1
        self.buckets = batch_buckets(max_batch)
        self.capture = capture
        device = cache.device
        size = self.buckets[-1]
        self._input_ids = torch.zeros(size, dtype=torch.long, device=device)
        self._positions = torch.zeros(size, dtype=torch.long, device=device)
        self._slots = torch.zeros(size, dtype=torch.long, device=device)
        self._seq_lens = torch.ones(size, dtype=torch.long, device=device)
        self._tables = torch.full((size, self.max_blocks), self.scratch_block, dtype=torch.long, device=device)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._failed: set[tuple[int, int]] = set()
        self._pool = torch.cuda.graph_pool_handle() if capture else None

    def fits(self, meta: AttentionMetadata) -> bool:
        key = self._key(meta)
        return meta.num_prefills == 0 and key is not None and key not in self._failed

    def _key(self, meta: AttentionMetadata) -> tuple[int, int] | None:
        batch = meta.num_seqs
        bucket = next((b for b in self.buckets if b >= batch), None)
        blocks = -(-max(meta.seq_lens) // self.block_size)
        width = 1 << (blocks - 1).bit_length()
        width = min(width, self.max_blocks)
        if bucket is None or blocks > width:
            return None
        return bucket, width

    def run(self, input_ids: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Logits [B, V] for a decode-only step (check ``fits`` first)."""
        key = self._key(meta)
        assert key is not None
        bucket, width = key
        batch = meta.num_seqs
        self._load(input_ids, meta, bucket)
        if not self.capture:  # CPU tests: the same static buffers and fixed width, run eagerly
            return self._forward(self._meta(bucket, width), bucket)[:batch].clone()
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(bucket, width)
            except Exception:  # noqa: BLE001 - some forwards cannot be captured: run those eagerly
                log.warning("decode graph capture failed; running this shape eagerly", extra={"bucket": bucket})
                self._failed.add(key)
                torch.cuda.synchronize()
                return self._forward(self._meta(bucket, width), bucket)[:batch].clone()
            self._graphs[key] = entry
        graph, logits = entry
        graph.replay()
        return logits[:batch].clone()

    def _load(self, input_ids: torch.Tensor, meta: AttentionMetadata, bucket: int) -> None:
        batch = meta.num_seqs
        self._input_ids[:batch].copy_(input_ids)
        self._positions[:batch].copy_(meta.positions)
        self._slots[:batch].copy_(meta.slot_mapping)
        self._seq_lens[:batch].copy_(meta.seq_lens_tensor)
        columns = meta.block_tables.shape[1]
        self._tables[:batch, :columns].copy_(meta.block_tables)
        self._tables[:batch, columns:].fill_(self.scratch_block)
        # Padding rows: token 0 at position 0, written to the scratch block's first slot.
        self._input_ids[batch:bucket].zero_()
        self._positions[batch:bucket].zero_()
        self._slots[batch:bucket].fill_(self.scratch_block * self.block_size)
        self._seq_lens[batch:bucket].fill_(1)
        self._tables[batch:bucket].fill_(self.scratch_block)

    def _meta(self, bucket: int, width: int) -> AttentionMetadata:
        """Metadata over the static buffers; its Python lengths fix the gather width at ``width`` blocks."""
        return AttentionMetadata(
            block_size=self.block_size,
            num_prefills=0,
            query_lens=[1] * bucket,
            seq_lens=[width * self.block_size] * bucket,
            query_starts=list(range(bucket)),
            positions=self._positions[:bucket],
            slot_mapping=self._slots[:bucket],
            block_tables=self._tables[:bucket, :width],
            seq_lens_tensor=self._seq_lens[:bucket],
        )

    def _forward(self, meta: AttentionMetadata, bucket: int) -> torch.Tensor:
        meta._masks.clear()  # masks derive from the buffers' current lengths
        with torch.inference_mode():
            hidden = self.model(self._input_ids[:bucket], meta.positions, meta)
            return self.model.compute_logits(hidden)

    def _capture(self, bucket: int, width: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm up: lazy inits and autotuning happen outside the capture
                self._forward(self._meta(bucket, width), bucket)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        meta = self._meta(bucket, width)
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            hidden = self.model(self._input_ids[:bucket], meta.positions, meta)
            logits = self.model.compute_logits(hidden)
        log.info("decode graph captured", extra={"batch_bucket": bucket, "width_blocks": width})
        return graph, logits
