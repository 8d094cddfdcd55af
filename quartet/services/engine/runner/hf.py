"""The transformers backend: Hugging Face's own model, the reference the native one is checked against.

Each sequence keeps its own ``DynamicCache``; a step runs the scheduled
sequences one after another. Slow but exact, and it runs any architecture transformers knows.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from quartet.services.engine.runner.base import (
    DTYPES,
    KVLayout,
    ModelRunner,
    RunnerInfo,
    RunnerOptions,
    context_length,
    read_hf_config,
)
from quartet.services.engine.sched.scheduler import ScheduledSequence

log = logging.getLogger(__name__)


class TransformersRunner(ModelRunner):
    def __init__(self, model, info: RunnerInfo, options: RunnerOptions) -> None:
        self.model = model
        self.info = info
        self.max_num_seqs = options.max_num_seqs
        # Blocks are only bookkeeping here (each sequence keeps its own DynamicCache): enough for every
        # sequence's full context, and no prefix caching, since a hit would skip tokens this cache never saw.
        blocks_per_seq = -(-info.context_length // options.block_size)
        self.kv_layout = KVLayout(options.max_num_seqs * blocks_per_seq, options.block_size, False)
        self._device = torch.device(info.device)
        self._caches: dict[int, tuple[object, int]] = {}  # seq_id -> (DynamicCache, tokens in it)
        # transformers 5 renamed past_key_values to cache; the cache object is updated in place either way.
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def load(cls, model_dir: Path, options: RunnerOptions) -> TransformersRunner:
        from transformers import AutoModelForCausalLM

        hf_config = read_hf_config(model_dir)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=DTYPES[options.dtype])
        model = model.to(options.device).eval()
        info = RunnerInfo(
            backend="transformers",
            architecture=str(hf_config.get("model_type", "unknown")),
            vocab_size=int(hf_config["vocab_size"]),
            context_length=context_length(hf_config, options.max_model_len),
            device=str(torch.device(options.device)),
            dtype=options.dtype,
        )
        log.info(
            "transformers model loaded",
            extra={"model_dir": str(model_dir), "dtype": options.dtype, "device": options.device},
        )
        return cls(model, info, options)

    @torch.inference_mode()
    def execute(self, batch: Sequence[ScheduledSequence]) -> torch.Tensor:
        """Each sequence's chunk through its own cache, one after another: slow but exact."""
        from transformers import DynamicCache

        rows = []
        for item in batch:
            seq = item.sequence
            cache, cached = self._caches.get(seq.seq_id, (None, 0))
            start = item.start
            if cache is None or cached != start:  # new, or preempted and recomputed: start over
                cache, start = DynamicCache(), 0
            end = item.start + item.num_new_tokens
            ids = torch.tensor([seq.token_ids[start:end]], dtype=torch.long, device=self._device)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_arg: cache})
            self._caches[seq.seq_id] = (cache, end)
            if item.needs_logits:
                rows.append(out.logits[0, -1].float())
        if not rows:
            return torch.empty(0, self.info.vocab_size)
        return torch.stack(rows)

    def release(self, seq_id: int) -> None:
        self._caches.pop(seq_id, None)
