"""The native backend: our PyTorch model with a slot KV cache and batched decode."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from services.engine.kv_cache import KVCache
from services.engine.model_runner import DTYPES, ModelRunner, RunnerInfo, context_length, read_hf_config
from services.engine.models.llama import LlamaConfig, LlamaModel, RotaryEmbedding

log = logging.getLogger(__name__)

#: HF architectures the native Llama model implements.
LLAMA_ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM"}


class NativeRunner(ModelRunner):
    def __init__(self, model: LlamaModel, cache: KVCache, info: RunnerInfo) -> None:
        self.model = model
        self.cache = cache
        self.info = info
        self.max_num_seqs = cache.max_slots
        self._device = cache.device
        self._idle_bytes = cache.num_bytes()
        self._slot_of: dict[int, int] = {}  # seq_id -> slot, slots always 0..n-1
        self._length: list[int] = [0] * cache.max_slots  # cached positions per slot

    @classmethod
    def load(cls, model_dir: Path, *, device: str, dtype: str, max_model_len: int, max_num_seqs: int) -> NativeRunner:
        hf_config = read_hf_config(model_dir)
        architectures = set(hf_config.get("architectures") or [])
        if not architectures & LLAMA_ARCHITECTURES:
            raise ValueError(
                f"the native engine runs Llama-family models ({', '.join(sorted(LLAMA_ARCHITECTURES))}); "
                f"{model_dir} is {sorted(architectures)}: use ENGINE=transformers"
            )
        config = LlamaConfig.from_hf(hf_config)
        torch_dtype = DTYPES[dtype]
        # Build on the meta device and assign the checkpoint's tensors: no random init of weights we replace.
        with torch.device("meta"):
            model = LlamaModel(config)
        weights: dict[str, torch.Tensor] = {}
        for path in sorted(model_dir.glob("*.safetensors")):
            weights.update(load_file(str(path), device="cpu"))
        model.load_hf_state_dict({k: v.to(device=device, dtype=torch_dtype) for k, v in weights.items()})
        model.rope = RotaryEmbedding(config.head_dim, config.rope_theta, config.max_position_embeddings).to(device)
        model.requires_grad_(False)
        model.eval()
        max_len = context_length(hf_config, max_model_len)
        cache = KVCache(
            num_layers=config.num_hidden_layers,
            max_slots=max_num_seqs,
            num_kv_heads=config.num_key_value_heads,
            head_dim=config.head_dim,
            max_len=max_len,
            dtype=torch_dtype,
            device=device,
        )
        info = RunnerInfo(
            backend="native",
            architecture="llama",
            vocab_size=config.vocab_size,
            context_length=max_len,
            device=str(torch.device(device)),
            dtype=dtype,
        )
        log.info(
            "native model loaded",
            extra={"model_dir": str(model_dir), "dtype": dtype, "device": device, "context_length": max_len},
        )
        return cls(model, cache, info)

    @property
    def num_active(self) -> int:
        return len(self._slot_of)

    def prefill(self, seq_id: int, token_ids: Sequence[int]) -> torch.Tensor:
        return self.prefill_many([seq_id], [token_ids])[0]

    def prefill_many(self, seq_ids: Sequence[int], prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        for seq_id in seq_ids:
            if seq_id in self._slot_of:
                raise ValueError(f"sequence {seq_id} is already started")
        first = len(self._slot_of)
        if first + len(seq_ids) > self.cache.max_slots:
            raise RuntimeError(f"{first} of {self.cache.max_slots} KV slots are in use; {len(seq_ids)} more do not fit")
        slots = list(range(first, first + len(seq_ids)))
        self.cache.ensure(first + len(seq_ids), max(len(p) for p in prompts) + 1)
        logits = self.model.prefill([list(p) for p in prompts], self.cache, slots)
        for seq_id, slot, prompt in zip(seq_ids, slots, prompts):
            self._slot_of[seq_id] = slot
            self._length[slot] = len(prompt)
        return logits.float()

    def prefill_all_logits(self, token_ids: Sequence[int]) -> torch.Tensor:
        """Logits at every prompt position [T, V], leaving no state behind (for parity checks)."""
        slot = len(self._slot_of)
        self.cache.ensure(slot + 1, len(token_ids))
        return self.model.prefill([list(token_ids)], self.cache, [slot], all_logits=True).float()

    def decode(self, seq_ids: Sequence[int], token_ids: Sequence[int]) -> torch.Tensor:
        batch = len(seq_ids)
        slots = [self._slot_of[s] for s in seq_ids]
        if sorted(slots) != list(range(batch)) or batch != len(self._slot_of):
            raise ValueError("decode must advance every active sequence together (slots 0..n-1)")
        # The model reads slots in order 0..B-1; put the inputs in slot order and the logits back.
        ordered = [0] * batch
        for position, slot in enumerate(slots):
            ordered[slot] = token_ids[position]
        lengths = self._length[:batch]
        self.cache.ensure(batch, max(lengths) + 1)
        ids = torch.tensor(ordered, dtype=torch.long, device=self._device)
        positions = torch.tensor(lengths, dtype=torch.long, device=self._device)
        logits = self.model.decode(ids, positions, self.cache)
        for slot in range(batch):
            self._length[slot] += 1
        if slots != list(range(batch)):
            logits = logits[torch.tensor(slots, device=self._device)]
        return logits.float()

    def release(self, seq_id: int) -> None:
        slot = self._slot_of.pop(seq_id, None)
        if slot is None:
            return
        last = len(self._slot_of)  # the highest occupied slot before removal
        if slot != last:
            moved = next(s for s, sl in self._slot_of.items() if sl == last)
            self.cache.move(last, slot, self._length[last])
            self._slot_of[moved] = slot
            self._length[slot] = self._length[last]
        self._length[last] = 0
        if not self._slot_of and self.cache.num_bytes() > self._idle_bytes:
            self.cache.reset()  # idle: give back what a long or wide burst grew
