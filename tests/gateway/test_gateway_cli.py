"""``quartet keygen`` and ``quartet chat`` run as real subprocesses against a live gateway."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet


ROOT = Path(__file__).resolve().parents[2]
KEY = Fernet.generate_key().decode()


def quartet(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "quartet.services.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def keyed_url(engine_address: str, gateway_server) -> Iterator[str]:
    with gateway_server(engine_address, encryption_key=KEY, api_keys="sk-cli") as live:
        yield live.url


def test_keygen_prints_a_usable_key() -> None:
    done = subprocess.run([sys.executable, "-m", "quartet.services.cli", "keygen"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"ok")) == b"ok"
    again = subprocess.run([sys.executable, "-m", "quartet.services.cli", "keygen"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() != key


def read_incrementally(process: subprocess.Popen, timeout: float) -> tuple[list[bytes], bytes]:
    """stdout as the separate pieces it arrived in, and all of stderr."""
    pieces: list[bytes] = []
    deadline = time.monotonic() + timeout
    while (piece := os.read(process.stdout.fileno(), 4096)) != b"":
        pieces.append(piece)
        assert time.monotonic() < deadline, "quartet chat did not finish in time"
    process.wait(timeout=max(1.0, deadline - time.monotonic()))
    return pieces, process.stderr.read()


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "plain"])
def test_chat_streams_and_prints_the_time_to_first_token(keyed_url: str, encrypt: bool) -> None:
    args = ["chat", "--prompt", "Sanity check. Tell me a short story.", "--url", keyed_url, "--max-tokens", "24", "--api-key", "sk-cli"]
    process = quartet(*args, *(["--encrypt"] if encrypt else []), env={"ENCRYPTION_KEY": KEY})
    pieces, stderr = read_incrementally(process, timeout=120)
    assert process.returncode == 0, stderr.decode()
    answer = b"".join(pieces).decode().strip()
    assert len(answer) > 10, answer
    assert len(pieces) > 1, "the answer must arrive incrementally, not all at once"
    report = stderr.decode()
    assert "time to first token:" in report and " s;" in report
    assert ("(encrypted)" in report) == encrypt


def test_chat_reports_failures(keyed_url: str) -> None:
    no_key = quartet("chat", "--prompt", "hi", "--url", keyed_url, "--encrypt", env={"ENCRYPTION_KEY": ""})
    _, stderr = read_incrementally(no_key, timeout=60)
    assert no_key.returncode == 2 and b"ENCRYPTION_KEY" in stderr

    wrong_api_key = quartet("chat", "--prompt", "hi", "--url", keyed_url, "--api-key", "sk-wrong", "--model", "m")
    _, stderr = read_incrementally(wrong_api_key, timeout=60)
    assert wrong_api_key.returncode == 1 and b"401" in stderr
