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

``capture_all`` captures every shape a context length can need up front (largest
batch first, so later graphs reuse the pool's memory), which keeps capture time out
of serving. ``min_width`` floors the gather width: fewer graphs, at the price of
gathering a few padding blocks for short sequences. ``fixed_width`` gives one width
for every step: the Triton paged attention reads only the blocks each sequence
has (its loop bounds come from the lengths on the device), so with it one graph per
batch bucket serves every context length.

ENGINE_CUDA_GRAPHS=1 turns it on; it is ignored on CPU. CI has no GPU: the
static-buffer path (padding, fixed width, scratch block) is tested on CPU with
capture switched off (``capture=False``), and ``tests/engine/test_engine_gpt_oss_cuda.py``
compares replayed and eager decode where a GPU is present.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from quartet.services.engine.runner.kv_cache import KVCache
from quartet.services.engine.layers.attention import AttentionMetadata
from quartet.services.engine.runner.pending_inputs import PendingInputs
from quartet.services.engine.sched.scheduler import ScheduledSequence

log = logging.getLogger(__name__)


class Staging:
    """Host integers to the device in one copy: a pinned buffer, reused once the last copy out of it finished.

    A decode step's inputs (ids, positions, slots, lengths, block tables) used to take five synchronous
    host-to-device copies; one asynchronous copy from pinned memory replaces them.
    """

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.device = device
        self.on_cuda = device.type == "cuda"
        self._host = torch.zeros(capacity, dtype=torch.long, pin_memory=self.on_cuda)
        self._host_array = self._host.numpy()  # the same memory: numpy fills it from a list without a tensor
        self._device = torch.zeros(capacity, dtype=torch.long, device=device)
        self._done = torch.cuda.Event() if self.on_cuda else None

    def upload(self, values: list[int]) -> torch.Tensor:
        n = len(values)
        if n > self._host.numel():  # grow (rare: a longer table than seen before)
            self.__init__(2 * n, self.device)
        if self._done is not None:
            self._done.synchronize()  # the previous copy out of the host buffer has finished
        self._host_array[:n] = values
        out = self._device[:n]
        out.copy_(self._host[:n], non_blocking=True)
        if self._done is not None:
            self._done.record()
        return out


def batch_buckets(max_batch: int) -> list[int]:
    buckets = [b for b in (1, 2, 4, 8) if b < max_batch] + list(range(16, max_batch, 16))
    return sorted(set(buckets + [max_batch]))


class DecodeGraphs:
    def __init__(
        self,
        model: nn.Module,
        cache: KVCache,
        *,
        max_batch: int,
        capture: bool = True,
        min_width: int = 1,
        fixed_width: int | None = None,
    ) -> None:
        self.model = model
        self.min_width = min_width
        self.fixed_width = fixed_width
        self.cache = cache
        self.block_size = cache.block_size
        self.scratch_block = cache.num_blocks - 1  # reserved: the runner reports one block fewer
        self.max_blocks = cache.num_blocks - 1
        self.buckets = batch_buckets(max_batch)
        self.capture = capture
        device = cache.device
        size = self.buckets[-1]
        # ids, positions, slots and lengths of a bucket-``b`` step live at [0, 4b) of one buffer (see
        # ``_rows``), so the host fills them, padding included, and one copy moves them.
        self._packed = torch.zeros(4 * size, dtype=torch.long, device=device)
        self._tables = torch.full((size, self.max_blocks), self.scratch_block, dtype=torch.long, device=device)
        self._staging = Staging(4 * size + 64 * size, device)
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._failed: set[tuple[int, int]] = set()
        self._metas: dict[tuple[int, int], AttentionMetadata] = {}
        self.pool = torch.cuda.graph_pool_handle() if capture else None

    def _key(self, batch: int, max_len: int) -> tuple[int, int] | None:
        """(batch bucket, width) for a decode step, or None when no graph can take it."""
        bucket = next((b for b in self.buckets if b >= batch), None)
        blocks = -(-max_len // self.block_size)
        width = self._width(blocks)
        if bucket is None or blocks > width or (bucket, width) in self._failed:
            return None
        return bucket, width

    def _width(self, blocks: int) -> int:
        if self.fixed_width is not None:
            return min(self.fixed_width, self.max_blocks)
        return min(max(self.min_width, 1 << (blocks - 1).bit_length()), self.max_blocks)

    def capture_all(self, max_len: int) -> int:
        """Capture every (batch bucket, width) that decoding sequences of up to ``max_len`` tokens needs; the count."""
        if not self.capture:
            return 0
        started = time.perf_counter()
        widths = sorted({self._width(b) for b in range(1, -(-max_len // self.block_size) + 1)})
        count = 0
        for width in widths:
            for bucket in sorted(self.buckets, reverse=True):  # largest first: smaller graphs reuse its memory
                key = (bucket, width)
                if key in self._graphs or key in self._failed:
                    continue
                self._pad(0, bucket)
                try:
                    self._graphs[key] = self._capture(bucket, width)
                    count += 1
                except Exception:  # noqa: BLE001 - that shape runs eagerly, as in run()
                    log.warning("decode graph capture failed", extra={"bucket": bucket, "width_blocks": width})
                    self._failed.add(key)
                    torch.cuda.synchronize()
        log.info("decode graphs captured", extra={"graphs": count, "seconds": round(time.perf_counter() - started, 2)})
        return count

    def run(
        self,
        batch_items: Sequence[ScheduledSequence],
        pending: PendingInputs | None = None,
        prev_tokens: torch.Tensor | None = None,
        *,
        owned: bool = True,
    ) -> torch.Tensor | None:
        """Logits [B, V] for a step of one-token decodes, or None when no graph fits it (run it eagerly).

        ``pending``: inputs that are ``prev_tokens`` rows (a step in flight picked them on the device).
        ``owned``: fp32 logits the caller keeps; otherwise a view of the graph's output buffer, valid
        until the next replay (device-side consumers queued before it read it safely).
        """
        lens = [item.start + 1 for item in batch_items]
        key = self._key(len(lens), max(lens))
        if key is None:
            return None
        bucket, width = key
        batch = len(lens)
        self._load(batch_items, lens, bucket, pending or PendingInputs(), prev_tokens)
        entry = self._graphs.get(key) if self.capture else None
        if entry is None and self.capture:
            try:
                entry = self._graphs[key] = self._capture(bucket, width)
            except Exception:  # noqa: BLE001 - some forwards cannot be captured: run those eagerly
                log.warning("decode graph capture failed; running this shape eagerly", extra={"bucket": bucket})
                self._failed.add(key)
                torch.cuda.synchronize()
        if entry is None:  # capture off (CPU tests) or failed: the same static buffers and width, eagerly
            logits = self._forward(self._meta(bucket, width), bucket)
        else:
            graph, logits = entry
            graph.replay()
        return _owned_float(logits[:batch]) if owned else logits[:batch]

    def _rows(self, bucket: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The bucket's static (ids, positions, slots, lengths): consecutive slices of one buffer."""
        p = self._packed
        return p[:bucket], p[bucket : 2 * bucket], p[2 * bucket : 3 * bucket], p[3 * bucket : 4 * bucket]

    def _load(
        self,
        batch_items: Sequence[ScheduledSequence],
        lens: list[int],
        bucket: int,
        pending: PendingInputs,
        prev_tokens: torch.Tensor | None,
    ) -> None:
        """The step's inputs, padding rows included, into the static buffers: one host-to-device copy, two
        device copies (two more gather the pending tokens). Padding rows decode token 0 at position 0 into
        the scratch block's first slot."""
        size, batch, pad = self.block_size, len(lens), bucket - len(lens)
        columns = -(-max(lens) // size)
        ids, positions, slots, tables = [], [], [], []
        for item, length in zip(batch_items, lens):
            seq, p = item.sequence, length - 1
            table = seq.block_table[:columns]
            ids.append(seq.token_ids[p] if p < len(seq.token_ids) else 0)  # pending: gathered below
            positions.append(p)
            slots.append(table[p // size] * size + p % size)
            tables += table
            tables += [self.scratch_block] * (columns - len(table))
        scratch = self.scratch_block
        flat = self._staging.upload(
            ids + [0] * pad + positions + [0] * pad + slots + [scratch * size] * pad + lens + [1] * pad
            + tables + [scratch] * (pad * columns) + pending.dst + pending.src
        )  # fmt: skip
        self._packed[: 4 * bucket].copy_(flat[: 4 * bucket])
        end = 4 * bucket + bucket * columns
        self._tables[:bucket, :columns].copy_(flat[4 * bucket : end].view(bucket, columns))
        if pending.dst:
            if prev_tokens is None:
                raise RuntimeError("a decode step reads pending tokens but the step in flight kept none")
            k = len(pending.dst)
            self._packed[:bucket].index_copy_(0, flat[end : end + k], prev_tokens.index_select(0, flat[end + k :]))
        if self.fixed_width is None:  # the torch gather reads every column up to the width: keep them valid
            self._tables[:bucket, columns:].fill_(scratch)

    def _pad(self, batch: int, bucket: int) -> None:
        """Rows [batch, bucket) as padding (``capture_all`` captures with every row so)."""
        ids, positions, slots, lens = self._rows(bucket)
        ids[batch:].zero_()
        positions[batch:].zero_()
        slots[batch:].fill_(self.scratch_block * self.block_size)
        lens[batch:].fill_(1)
        self._tables[batch:bucket].fill_(self.scratch_block)

    def _meta(self, bucket: int, width: int) -> AttentionMetadata:
        """Metadata over the static buffers; its Python lengths fix the gather width at ``width`` blocks."""
        _, positions, slots, lens = self._rows(bucket)
        return AttentionMetadata(
            block_size=self.block_size,
            num_prefills=0,
            query_lens=[1] * bucket,
            seq_lens=[width * self.block_size] * bucket,
            query_starts=list(range(bucket)),
            positions=positions,
            slot_mapping=slots,
            block_tables=self._tables[:bucket, :width],
            seq_lens_tensor=lens,
        )

    def _forward(self, meta: AttentionMetadata, bucket: int) -> torch.Tensor:
        meta._masks.clear()  # masks derive from the buffers' current lengths
        with torch.inference_mode():
            hidden = self.model(self._rows(bucket)[0], meta.positions, meta)
            return self.model.compute_logits(hidden)

    def _capture(self, bucket: int, width: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Kept as long as the graph: whatever a layer caches on the metadata, the captured kernels read.
        meta = self._metas.setdefault((bucket, width), self._meta(bucket, width))
        entry = capture_graph(lambda: self._forward(meta, bucket), self.pool)
        log.info("decode graph captured", extra={"batch_bucket": bucket, "width_blocks": width})
        return entry


def capture_graph(forward: Callable[[], torch.Tensor], pool: object) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Run ``forward`` twice on a side stream (lazy inits and autotuning stay outside), then capture it.

    The same closure (and so the same metadata object) serves warm-up and capture: whatever the
    layers cache on it during warm-up (device tensors built from host data) is reused by the
    capture, which must not copy from the host.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            forward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph, pool=pool):
        out = forward()
    return graph, out


def _owned_float(logits: torch.Tensor) -> torch.Tensor:
    """fp32 logits the caller owns: the static output buffer is overwritten by the next replay."""
    return logits.float() if logits.dtype != torch.float32 else logits.clone()
