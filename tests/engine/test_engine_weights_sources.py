"""MODEL_ID resolution: Hugging Face ids in local hub caches (the hub's real on-disk layout, blobs and
symlinked snapshots), the download switch and its errors, GGUF files, and plain directories."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from quartet.services.common.errors import InvalidArgument, Unavailable
from quartet.services.engine.hf_hub import cache_dirs, find_snapshot
from quartet.services.engine.layers.attention import AttentionMetadata
from quartet.services.engine.model_cache import bundled_cache_dir, bundled_gguf_path, gguf_cache_dir, resolve_model
from quartet.services.engine.models.loader import load_model_dir
from tests.engine.gpt_oss_tiny import bind_kv_pools, write_tiny_gpt_oss

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gpt_oss(tmp_path_factory.mktemp("gpt-oss-tiny"), seed=5)


def fill_hub_cache(hub: Path, repo_id: str, files: Path, commit: str = COMMIT) -> Path:
    """Lay ``files`` out as huggingface_hub does: content in blobs/, snapshots/COMMIT/ symlinks, refs/main."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, path in enumerate(sorted(files.iterdir())):
        blob = repo / "blobs" / f"blob{i:04d}"
        shutil.copyfile(path, blob)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache that is the only one searched (HOME moved so ~/.cache is empty too)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_ENABLE_HF_TRANSFER", raising=False)
    (tmp_path / "hub").mkdir()
    return tmp_path / "hub"


def test_a_hub_id_resolves_to_its_cached_snapshot_and_the_model_runs(hub: Path, tiny_checkpoint: Path) -> None:
    snapshot = fill_hub_cache(hub, "acme/tiny-gpt-oss", tiny_checkpoint)
    assert resolve_model("acme/tiny-gpt-oss") == snapshot
    assert resolve_model(f"acme/tiny-gpt-oss@{COMMIT}") == snapshot
    config = json.loads((snapshot / "config.json").read_text())
    model = load_model_dir(snapshot, config, device="cpu", dtype=torch.float32)
    bind_kv_pools(model, num_blocks=8, block_size=4)
    meta = AttentionMetadata.contiguous([6], block_size=4)
    logits = model.compute_logits(model(torch.tensor([3, 14, 15, 92, 65, 35]), meta.positions, meta))
    assert logits.shape == (6, config["vocab_size"]) and torch.isfinite(logits).all()


def test_hf_home_and_the_mounted_cache_are_searched(hub: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    searched = cache_dirs()
    assert searched[:2] == [hub, tmp_path / "hf-home" / "hub"]
    assert Path("/runpod-volume/huggingface-cache/hub") in searched


def test_an_incomplete_snapshot_is_not_used(hub: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", partial)
    (partial / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    fill_hub_cache(hub, "acme/partial", partial)
    assert find_snapshot("acme/partial") is None
    with pytest.raises(InvalidArgument, match="not in the local Hugging Face caches"):
        resolve_model("acme/partial")


def test_a_missing_id_says_how_to_download_it(hub: Path) -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_model("acme/absent-model")
    assert "HF_HUB_ENABLE_HF_TRANSFER=1" in str(caught.value) and str(hub) in str(caught.value)
    assert caught.value.field == "MODEL_ID"


def test_download_failures_are_unavailable_with_the_cause(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_ENABLE_HF_TRANSFER", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    with pytest.raises(Unavailable, match="could not download 'acme/absent-model'.*Connect"):
        resolve_model("acme/absent-model")


def test_gguf_files_and_directories(tmp_path: Path) -> None:
    bundled = bundled_gguf_path()
    # The bundled file, named by path or by its directory, shares the bundled model's converted cache.
    assert gguf_cache_dir(bundled) == bundled_cache_dir()
    if (bundled_cache_dir() / "config.json").is_file():
        assert resolve_model(str(bundled)) == bundled_cache_dir()
    # Another GGUF gets its own cache directory, keyed by path, size and modification time.
    copy = tmp_path / "My-Model.Q4_1.gguf"
    copy.write_bytes(b"GGUF" + b"\0" * 60)
    other = gguf_cache_dir(copy)
    assert other.parent == bundled_cache_dir().parent and other.name.startswith("my-model.q4_1-")
    copy.write_bytes(b"GGUF" + b"\0" * 61)
    assert gguf_cache_dir(copy) != other
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidArgument, match="not a .gguf"):
        resolve_model(str(tmp_path / "notes.txt"))


def test_a_directory_without_weights_is_refused_with_what_it_lacks(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InvalidArgument, match=r"\*\.safetensors"):
        resolve_model(str(tmp_path))
    with pytest.raises(InvalidArgument, match="a Hugging Face id"):
        resolve_model("not an id at all")
