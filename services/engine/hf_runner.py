"""The transformers backend: Hugging Face's own model, the reference the native one is checked against.

Each sequence keeps its own ``DynamicCache``; decode steps the sequences one
after another. Slow but exact, and it runs any architecture transformers knows.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from services.engine.model_runner import DTYPES, ModelRunner, RunnerInfo, context_length, read_hf_config

log = logging.getLogger(__name__)


class TransformersRunner(ModelRunner):
    def __init__(self, model, info: RunnerInfo, max_num_seqs: int) -> None:
        self.model = model
        self.info = info
        self.max_num_seqs = max_num_seqs
        self._device = torch.device(info.device)
        self._caches: dict[int, object] = {}
        # transformers 5 renamed past_key_values to cache; the cache object is updated in place either way.
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def load(
        cls, model_dir: Path, *, device: str, dtype: str, max_model_len: int, max_num_seqs: int
    ) -> TransformersRunner:
        from transformers import AutoModelForCausalLM

        hf_config = read_hf_config(model_dir)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=DTYPES[dtype]).to(device).eval()
        info = RunnerInfo(
            backend="transformers",
            architecture=str(hf_config.get("model_type", "unknown")),
            vocab_size=int(hf_config["vocab_size"]),
            context_length=context_length(hf_config, max_model_len),
            device=str(torch.device(device)),
            dtype=dtype,
        )
        log.info("transformers model loaded", extra={"model_dir": str(model_dir), "dtype": dtype, "device": device})
        return cls(model, info, max_num_seqs)

    @property
    def num_active(self) -> int:
        return len(self._caches)

    @torch.inference_mode()
    def prefill(self, seq_id: int, token_ids: Sequence[int]) -> torch.Tensor:
        from transformers import DynamicCache

        cache = DynamicCache()
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self._device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_arg: cache})
        self._caches[seq_id] = cache
        return out.logits[0, -1].float()

    @torch.inference_mode()
    def decode(self, seq_ids: Sequence[int], token_ids: Sequence[int]) -> torch.Tensor:
        rows = []
        for seq_id, token in zip(seq_ids, token_ids):
            ids = torch.tensor([[token]], dtype=torch.long, device=self._device)
            out = self.model(input_ids=ids, use_cache=True, **{self._cache_arg: self._caches[seq_id]})
            rows.append(out.logits[0, -1].float())
        return torch.stack(rows)

    def release(self, seq_id: int) -> None:
        self._caches.pop(seq_id, None)
