"""The o200k vocabulary for openai-harmony, offline, from the quicktok-v1 package.

openai-harmony's Rust core builds its ``o200k_harmony`` encoding from the
tiktoken file ``o200k_base.tiktoken`` (one ``base64(token bytes) rank`` line per
token) plus Harmony's special tokens. Without network it reads the file from
the directory in ``TIKTOKEN_ENCODINGS_BASE`` and checks its SHA-256 against the
published one. quicktok-v1 ships the same vocabulary in its own binary format,
so we write the tiktoken file once from it into ``$QUARTET_HOME/tiktoken`` (the
hash check proves the copy exact) and point openai-harmony there.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

VOCAB_FILE = "o200k_base.tiktoken"
#: SHA-256 of OpenAI's published o200k_base.tiktoken, the value openai-harmony checks.
VOCAB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
#: Ordinary (non-special) tokens of o200k_base: ranks 0..199997.
NUM_BASE_TOKENS = 199_998
ENV_VAR = "TIKTOKEN_ENCODINGS_BASE"

_lock = threading.Lock()


def quartet_home() -> Path:
    default = Path(__file__).resolve().parents[4] / "var"
    return Path(os.environ.get("QUARTET_HOME") or default)


def vocab_dir() -> Path:
    return quartet_home() / "tiktoken"


def o200k_base_lines() -> bytes:
    """The tiktoken file's bytes, rebuilt from quicktok's bundled vocabulary."""
    import quicktok

    encoding = quicktok.get_encoding("o200k_base")
    lines = [
        base64.b64encode(encoding.decode_single_token_bytes(rank)) + b" " + str(rank).encode() + b"\n"
        for rank in range(NUM_BASE_TOKENS)
    ]
    return b"".join(lines)


def ensure_vocab_file(directory: Path | None = None) -> Path:
    """``directory``/o200k_base.tiktoken, written once; raises if quicktok's copy does not hash right."""
    directory = directory or vocab_dir()
    path = directory / VOCAB_FILE
    with _lock:
        if path.is_file() and _sha256(path.read_bytes()) == VOCAB_SHA256:
            return path
        data = o200k_base_lines()
        digest = _sha256(data)
        if digest != VOCAB_SHA256:
            raise RuntimeError(
                f"the o200k_base vocabulary rebuilt from quicktok hashes to {digest}, not {VOCAB_SHA256}; "
                "reinstall quicktok-v1"
            )
        directory.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_bytes(data)
        staging.replace(path)  # atomic: a concurrent reader never sees half a file
        log.info("wrote the o200k vocabulary for harmony", extra={"path": str(path)})
        return path


@lru_cache(maxsize=1)
def load_encoding():
    """openai-harmony's gpt-oss encoding, loaded from the local vocabulary file (no network)."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    path = ensure_vocab_file()
    os.environ[ENV_VAR] = str(path.parent)
    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
