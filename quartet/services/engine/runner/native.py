"""The native backend: our PyTorch models over the paged KV cache.

Each step is one forward pass over every scheduled token (prompt chunks and
decodes together, as the scheduler laid them out), then logits for the rows
that need a next token. The block pool is allocated once at load and bound
to the model's attention layers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from quartet.services.engine.runner.cuda_graphs import DecodeGraphs, Staging
from quartet.services.engine.runner.kv_cache import KVCache, KVCacheShape, num_blocks_for
from quartet.services.engine.layers.attention import AttentionMetadata, attention_backend
from quartet.services.engine.models.loader import load_model_dir
from quartet.services.engine.models.registry import model_type_of
from quartet.services.engine.runner.pending_inputs import PendingInputs, host_input_ids, pending_inputs
from quartet.services.engine.runner.prefill_graphs import PrefillGraphs
from quartet.services.engine.runner.base import (
    DTYPES,
    KVLayout,
    LaunchedStep,
    ModelRunner,
    RunnerInfo,
    RunnerOptions,
    context_length,
    read_hf_config,
)
from quartet.services.engine.sched.scheduler import ScheduledSequence
from quartet.services.engine.runner.step_timer import StepTiming

log = logging.getLogger(__name__)

#: Longest prompt that prefills through a CUDA graph; longer ones are GPU-bound and run eagerly.
PREFILL_GRAPH_MAX_TOKENS = 2048


class NativeRunner(ModelRunner):
    supports_pending_tokens = True

    def __init__(self, model: nn.Module, cache: KVCache, info: RunnerInfo, options: RunnerOptions) -> None:
        self.model = model
        self.cache = cache
        self.info = info
        self.max_num_seqs = options.max_num_seqs
        self.kv_layout = KVLayout(cache.num_blocks, cache.block_size, options.enable_prefix_caching)
        self._device = cache.device
        self._vocab_size = info.vocab_size
        self._graphs: DecodeGraphs | None = None
        self._prefill: PrefillGraphs | None = None
        # Pinned host buffers the argmax tokens of a step land in: two, since one step can be in flight
        # while the previous one's tokens are read.
        on_cuda = self._device.type == "cuda"
        self._token_hosts = [torch.zeros(self.max_num_seqs, dtype=torch.long, pin_memory=on_cuda) for _ in range(2)]
        self._token_ring = 0
        self._eager_staging = Staging(1 << 16, self._device)
        # Benchmarks set a list here to get every step's GPU time (step_timer.py); CUDA only.
        self.step_timings: list[StepTiming] | None = None
        self._path = "eager"  # the path _forward took last (for step_timings)
        if options.cuda_graphs and self._device.type == "cuda":
            self.enable_decode_graphs()

    def enable_decode_graphs(self, *, capture: bool = True, min_width: int | None = None) -> None:
        """Decode through CUDA graphs (``capture=False``: the same static-buffer path, eager; for CPU tests).

        The graphs' padding rows write into the pool's last block, so the block manager gets one block fewer.
        ``min_width`` (blocks) floors the KV width a graph is captured for; by default 16 when capturing.
        """
        if min_width is None:
            min_width = 16 if capture else 1
        fixed_width = None
        if self._device.type == "cuda" and attention_backend() != "torch":  # in-kernel loop bounds: one width
            fixed_width = -(-self.info.context_length // self.cache.block_size)
        self._graphs = DecodeGraphs(
            self.model, self.cache, max_batch=self.max_num_seqs, capture=capture, min_width=min_width,
            fixed_width=fixed_width,
        )  # fmt: skip
        max_tokens = min(PREFILL_GRAPH_MAX_TOKENS, (self.cache.num_blocks - 1) * self.cache.block_size)
        self._prefill = PrefillGraphs(self.model, self.cache, scratch_block=self._graphs.scratch_block,
                                      max_tokens=max_tokens, pool=self._graphs.pool, capture=capture)  # fmt: skip
        layout = self.kv_layout
        self.kv_layout = KVLayout(self.cache.num_blocks - 1, layout.block_size, layout.enable_prefix_caching)
        usable = (self.cache.num_blocks - 1) * self.cache.block_size
        self.info = replace(self.info, context_length=min(self.info.context_length, usable))

    def warm_up(self, max_len: int) -> int:
        """Capture the decode graphs sequences of up to ``max_len`` tokens need, now; how many were captured."""
        if self._graphs is None or self._prefill is None:
            return 0
        if self._graphs.fixed_width is None:  # a graph per width (torch attention): the rest capture on demand
            max_len = min(max_len, PREFILL_GRAPH_MAX_TOKENS)
        return self._prefill.capture_all() + self._graphs.capture_all(max_len)

    @classmethod
    def load(cls, model_dir: Path, options: RunnerOptions) -> NativeRunner:
        hf_config = read_hf_config(model_dir)
        dtype, device = DTYPES[options.dtype], torch.device(options.device)
        model = load_model_dir(model_dir, hf_config, device=device, dtype=dtype, weight_format=options.weight_format)
        shape = KVCacheShape.of(model, options.block_size)
        num_blocks = num_blocks_for(
            shape,
            dtype=dtype,
            device=device,
            configured=options.num_kv_blocks,
            gpu_memory_utilization=options.gpu_memory_utilization,
        )
        cache = KVCache(shape, num_blocks, dtype=dtype, device=device)
        cache.bind(model)
        # One sequence must fit the pool on its own, so the context is what the pool holds at most.
        max_len = min(context_length(hf_config, options.max_model_len), cache.num_tokens)
        info = RunnerInfo(
            backend="native",
            architecture=model_type_of(hf_config),
            vocab_size=int(hf_config["vocab_size"]),
            context_length=max_len,
            device=str(device),
            dtype=options.dtype,
        )
        log.info(
            "native model loaded",
            extra={
                "model_dir": str(model_dir),
                "dtype": options.dtype,
                "device": str(device),
                "context_length": max_len,
                "kv_blocks": num_blocks,
                "kv_block_size": options.block_size,
                "kv_cache_mib": round(cache.num_bytes() / 2**20, 1),
            },
        )
        return cls(model, cache, info, options)

    def execute(self, batch: Sequence[ScheduledSequence]) -> torch.Tensor:
        if not batch:
            return torch.empty(0, self._vocab_size)
        return self.launch(batch).logits()

    def launch(
        self, batch: Sequence[ScheduledSequence], *, greedy: bool = False, prev: LaunchedStep | None = None
    ) -> LaunchedStep:
        """Queue the step on the device and return at once (on CUDA); ``greedy`` picks tokens there too."""
        rows = {item.sequence.seq_id: i for i, item in enumerate(item for item in batch if item.needs_logits)}
        timing = None
        if self.step_timings is not None and self._device.type == "cuda":
            timing = StepTiming("", sum(item.num_new_tokens for item in batch))
            timing.start.record()
        pending = pending_inputs(batch, prev)
        # A greedy step reads the graph's output buffer on the device before the next replay can overwrite it;
        # logits for the host are copied out of it.
        logits = self._forward(batch, pending, None if prev is None else prev.device_tokens, owned=not greedy)
        if timing is not None:
            timing.path = self._path
            timing.end.record()
            self.step_timings.append(timing)
        done = torch.cuda.Event() if self._device.type == "cuda" else None
        if not greedy:
            logits = logits.float() if logits.dtype != torch.float32 else logits
            if done is not None:
                done.record()
            return LaunchedStep(rows, logits=logits, done=done)
        tokens = logits.argmax(dim=-1)
        host = None
        if done is not None:  # one pinned buffer per step in flight: two alternate
            self._token_ring = 1 - self._token_ring
            if self._token_hosts[self._token_ring].numel() < tokens.numel():
                self._token_hosts[self._token_ring] = torch.zeros(tokens.numel(), dtype=torch.long, pin_memory=True)
            host = self._token_hosts[self._token_ring][: tokens.numel()]
            host.copy_(tokens, non_blocking=True)
            done.record()
        return LaunchedStep(rows, device_tokens=tokens, host_tokens=host, done=done)

    def _forward(
        self,
        batch: Sequence[ScheduledSequence],
        pending: PendingInputs,
        prev_tokens: torch.Tensor | None,
        *,
        owned: bool,
    ) -> torch.Tensor:
        """Logits [rows, V] (model dtype, or a graph's static buffer) for the items with ``needs_logits``."""
        if not batch:
            return torch.empty(0, self._vocab_size, device=self._device)
        if self._prefill is not None and len(batch) == 1 and not pending.dst:
            item = batch[0]
            n, seq = item.num_new_tokens, item.sequence
            if item.start == 0 and item.needs_logits and item.is_prefill and self._prefill.bucket_for(n):
                self._path = "prefill_graph"
                return self._prefill.run(seq.token_ids[:n], seq.block_table)
        if self._graphs is not None and all(item.num_new_tokens == 1 and item.needs_logits for item in batch):
            logits = self._graphs.run(batch, pending, prev_tokens, owned=owned)  # reads the sequences' tokens itself
            if logits is not None:
                self._path = "decode_graph"
                return logits
        self._path = "eager"
        # Input ids, the logit rows and the metadata's integers go up in one pinned, non-blocking copy, so
        # launching this step never waits for the one before it to finish on the device.
        ids = host_input_ids(batch)
        rows, ends = [], 0
        for item in batch:
            ends += item.num_new_tokens
            if item.needs_logits:
                rows.append(ends - 1)
        num_rows = len(rows)
        on_cuda = self._device.type == "cuda"
        if on_cuda and rows and num_rows != ends:  # logits rows padded to a decode bucket: see _bucket
            rows += [rows[-1]] * (_bucket(num_rows) - num_rows)
        head = ids + rows + [0] * ((len(ids) + len(rows)) % 2)  # the metadata starts 16-byte aligned
        uploaded: list[torch.Tensor] = []

        def upload(values: list[int]) -> torch.Tensor:
            uploaded.append(self._eager_staging.upload(head + values))
            return uploaded[0][len(head) :]

        meta = AttentionMetadata.build(
            query_lens=[item.num_new_tokens for item in batch],
            seq_lens=[item.start + item.num_new_tokens for item in batch],
            block_tables=[item.sequence.block_table for item in batch],
            block_size=self.cache.block_size,
            device=self._device,
            upload=upload,
            width_multiple=16 if on_cuda else 1,
        )
        input_ids, row_index = uploaded[0][: len(ids)], uploaded[0][len(ids) : len(ids) + len(rows)]
        pending.fill(input_ids, prev_tokens)  # in the staging buffer: the next upload is queued after this step
        with torch.inference_mode():
            hidden = self.model(input_ids, meta.positions, meta)
            if len(rows) != hidden.shape[0]:
                hidden = hidden.index_select(0, row_index)
            return self.model.compute_logits(hidden)[:num_rows]

    def prompt_logits(self, token_ids: Sequence[int]) -> torch.Tensor:
        """Logits at every position of one prompt [T, V], written to blocks 0.. (parity checks; not while serving)."""
        meta = AttentionMetadata.contiguous([len(token_ids)], block_size=self.cache.block_size, device=self._device)
        with torch.inference_mode():
            hidden = self.model(torch.tensor(list(token_ids), device=self._device), meta.positions, meta)
            return self.model.compute_logits(hidden).float()


def _bucket(rows: int) -> int:
    """Rows the unembedding of an eager step runs on: 1, 2, 4, 8 or a multiple of 16, as in the decode
    graphs' batch buckets. Triton compiles a kernel per tile config and per row count's divisibility
    by 16; any other count (the logits rows of a prompt chunk plus some decodes) compiled mid-serving,
    stalling that step for up to a second on an H100."""
    if rows <= 8:
        return 1 << max(0, rows - 1).bit_length()
    return -(-rows // 16) * 16
