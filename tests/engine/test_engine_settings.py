"""Engine settings and model resolution: what MODEL_ID and ENGINE accept, and the cache's atomic build."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine import model_cache
from quartet.services.engine.model_cache import BUNDLED_MODEL_ID, REQUIRED_FILES, ensure_bundled_model, resolve_model
from quartet.services.engine.settings import EngineSettings


def test_defaults_and_environment(monkeypatch) -> None:
    monkeypatch.setenv("ENGINE", "transformers")
    monkeypatch.setenv("ENGINE_LISTEN", "0.0.0.0:6000")
    monkeypatch.setenv("ENGINE_NUM_THREADS", "3")
    settings = EngineSettings()
    assert settings.backend == "transformers"
    assert settings.listen == "0.0.0.0:6000"
    assert settings.resolved_num_threads() == 3
    assert EngineSettings(_env_file=None, backend="native").model_id == BUNDLED_MODEL_ID


def test_vllm_says_it_needs_the_gpu_image() -> None:
    with pytest.raises(ValidationError, match="GPU image"):
        EngineSettings(backend="vllm")


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ValidationError, match="native"):
        EngineSettings(backend="llamacpp")


def test_cpu_defaults_to_float32_and_physical_cores() -> None:
    settings = EngineSettings(_env_file=None, device="cpu")
    assert settings.resolved_dtype("cpu") == "float32"
    assert settings.resolved_num_threads() >= 1


def test_hub_ids_missing_from_the_local_caches_are_refused_with_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_ENABLE_HF_TRANSFER", raising=False)
    with pytest.raises(InvalidArgument) as caught:
        resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    message = caught.value.message
    assert "local Hugging Face caches" in message and "HF_HUB_ENABLE_HF_TRANSFER=1" in message
    with pytest.raises(InvalidArgument) as caught:
        resolve_model("no such model")
    assert BUNDLED_MODEL_ID in caught.value.message and "local directory" in caught.value.message


def test_local_directory_needs_config_and_safetensors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="config.json"):
        resolve_model(str(tmp_path))
    served = ensure_bundled_model(quiet=True)
    assert resolve_model(str(served)) == served


def test_existing_cache_is_reused_without_converting(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QUARTET_HOME", str(tmp_path))
    target = tmp_path / "models" / model_cache.BUNDLED_CACHE_NAME
    target.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (target / name).write_text("{}")
    monkeypatch.setattr(model_cache, "convert_gguf", lambda *a, **k: pytest.fail("converted again"))
    started = time.perf_counter()
    assert ensure_bundled_model() == target
    assert time.perf_counter() - started < 1.0
    assert "already cached" in capsys.readouterr().out


def test_interrupted_conversion_leaves_no_partial_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("QUARTET_HOME", str(tmp_path))
    import transformers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_bundled_model(quiet=True)
    models = tmp_path / "models"
    assert list(models.iterdir()) == []  # neither the target nor the staging directory


def test_bundled_gguf_is_found_through_the_import_system() -> None:
    path = model_cache.bundled_gguf_path()
    assert path.name == model_cache.BUNDLED_GGUF and path.stat().st_size > 50_000_000
