"""Hugging Face model ids: found in the local hub caches first, downloaded only when asked to.

The caches are searched in this order: ``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
``~/.cache/huggingface/hub`` and ``/runpod-volume/huggingface-cache/hub`` (a
mounted cache on RunPod-style GPU hosts). Each uses the hub's documented layout
(``models--ORG--NAME/refs/REV`` holds a commit, ``snapshots/COMMIT/`` the files),
read here directly so a lookup never touches the network.

A download happens only with ``HF_HUB_ENABLE_HF_TRANSFER=1``, the switch the design
names for fast transfers. huggingface_hub 1.x replaced the ``hf_transfer`` package
by its built-in Xet transfers, which it uses on its own; the variable stays our
opt-in so a typo in MODEL_ID never starts a 40 GB download. ``HF_TOKEN`` and
``HF_ENDPOINT`` (a mirror) are honoured.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from quartet.services.common.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

MOUNTED_CACHE = Path("/runpod-volume/huggingface-cache/hub")
DOWNLOAD_SWITCH = "HF_HUB_ENABLE_HF_TRANSFER"
#: "org/name" or "org/name@revision" (a branch, tag or commit).
REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
#: What the engine reads from a repository; gpt-oss repos also carry original/ and metal/ copies it never reads.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]
IGNORE_PATTERNS = ["original/*", "metal/*", "onnx/*", "*/*.safetensors"]


def is_repo_id(model_id: str) -> bool:
    return REPO_ID.match(model_id) is not None


def cache_dirs() -> list[Path]:
    """Hub cache directories to search, in order, without duplicates."""
    candidates = []
    if os.environ.get("HF_HUB_CACHE"):
        candidates.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        candidates.append(Path(os.environ["HF_HOME"]) / "hub")
    candidates += [Path.home() / ".cache" / "huggingface" / "hub", MOUNTED_CACHE]
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def missing_files(directory: Path) -> list[str]:
    """What a model directory lacks to load: config.json and every safetensors shard it names."""
    missing = [] if (directory / "config.json").is_file() else ["config.json"]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing += [s for s in shards if not (directory / s).is_file()]  # is_file follows the blob symlinks
    elif not any(directory.glob("*.safetensors")):
        missing.append("*.safetensors")
    return missing


def find_snapshot(repo_id: str, revision: str | None = None, caches: list[Path] | None = None) -> Path | None:
    """The newest complete local snapshot of ``repo_id`` at ``revision`` (default: main), or None."""
    folder = "models--" + repo_id.replace("/", "--")
    for cache in caches if caches is not None else cache_dirs():
        repo = cache / folder
        if not repo.is_dir():
            continue
        commit = revision or "main"
        ref = repo / "refs" / commit
        if ref.is_file():
            commit = ref.read_text().strip()
        snapshot = repo / "snapshots" / commit
        if snapshot.is_dir() and not missing_files(snapshot):
            return snapshot
        if snapshot.is_dir():
            log.warning(
                "incomplete model in the hub cache",
                extra={"path": str(snapshot), "missing": missing_files(snapshot)[:5]},
            )
    return None


def resolve_repo(model_id: str) -> Path:
    """A local directory holding ``model_id`` ("org/name[@revision]"): cached, or downloaded if allowed."""
    match = REPO_ID.match(model_id)
    if match is None:
        raise InvalidArgument(f"MODEL_ID {model_id!r} is not a Hugging Face id (org/name)", field="MODEL_ID")
    repo_id, revision = match["repo"], match["revision"]
    found = find_snapshot(repo_id, revision)
    if found is not None:
        log.info("model found in the hub cache", extra={"model_id": model_id, "path": str(found)})
        return found
    searched = ", ".join(str(p) for p in cache_dirs())
    if os.environ.get(DOWNLOAD_SWITCH, "").strip().lower() not in ("1", "true", "yes", "on"):
        raise InvalidArgument(
            f"MODEL_ID {model_id!r} is not in the local Hugging Face caches (searched {searched}). "
            f"Set {DOWNLOAD_SWITCH}=1 (and HF_TOKEN for gated models) to download it, mount a cache that holds it "
            "(HF_HOME or HF_HUB_CACHE), or give a local directory or .gguf file",
            field="MODEL_ID",
        )
    return _download(repo_id, revision, searched)


def _download(repo_id: str, revision: str | None, searched: str) -> Path:
    from huggingface_hub import snapshot_download

    log.info("downloading model", extra={"model_id": repo_id, "revision": revision or "main"})
    try:
        path = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                allow_patterns=ALLOW_PATTERNS,
                ignore_patterns=IGNORE_PATTERNS,
                token=os.environ.get("HF_TOKEN") or None,
                endpoint=os.environ.get("HF_ENDPOINT") or None,
            )
        )
    except Exception as error:  # noqa: BLE001 - network, auth and not-found errors all end here
        raise Unavailable(
            f"could not download {repo_id!r} from the Hugging Face Hub ({type(error).__name__}: {error}); "
            f"check the network, HF_TOKEN and the id, or pre-fill a cache (searched {searched})"
        ) from error
    missing = missing_files(path)
    if missing:
        raise InvalidArgument(
            f"{repo_id!r} has no loadable safetensors model at its top level (missing {missing[:3]})", field="MODEL_ID"
        )
    return path
