"""No prompt, key, Fernet token or answer in any service's logs (issue 18, exposure).

The suite runs as `make run` starts it, with API keys, an encryption key and LOG_LEVEL=DEBUG
(payloads are logged only when LOG_PAYLOADS=1 is also set). After plain, encrypted, failing
and agent requests, the launcher's output (every service's stdout and stderr) is searched
for each secret and each piece of payload.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.e2e.test_launcher import MODEL, LauncherProcess, suite_env

pytestmark = pytest.mark.e2e


def test_logs_hold_no_secret_and_no_payload(tmp_path: Path) -> None:
    api_key = f"sk-{uuid.uuid4().hex}"
    fernet_key = Fernet.generate_key()
    marker = f"zebra{uuid.uuid4().hex[:10]}"  # a word no log line could hold by chance
    env = suite_env(tmp_path, API_KEYS=api_key, ENCRYPTION_KEY=fernet_key.decode(), LOG_LEVEL="DEBUG")
    port = env["PORT"]
    env.pop("LOG_PAYLOADS", None)
    launcher = LauncherProcess(env)
    try:
        assert launcher.up.wait(timeout=300), launcher.output()
        auth = {"Authorization": f"Bearer {api_key}"}
        question = [{"role": "user", "content": f"Say hello to {marker}."}]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            plain = http.post("/v1/chat/completions", headers=auth, json={"model": MODEL, "messages": question, "max_tokens": 12})
            assert plain.status_code == 200, plain.text
            answer = plain.json()["choices"][0]["message"]["content"]
            token = Fernet(fernet_key).encrypt(json.dumps({"model": MODEL, "messages": question, "max_tokens": 8}).encode())
            sealed = http.post("/v1/chat/completions", headers=auth, json={"encrypted": token.decode()})
            assert sealed.status_code == 200, sealed.text
            tampered = token.decode()[:-6] + "AAAAAA"
            assert http.post("/v1/chat/completions", headers=auth, json={"encrypted": tampered}).status_code == 400
            assert http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong-" + marker}).status_code == 401
            agent = http.post(
                "/v1/chat/completions", headers={**auth, "X-Session-Id": "s-logs"},
                json={"model": "agent/chat", "messages": question, "max_tokens": 8},
            )
            assert agent.status_code == 200, agent.text
    finally:
        launcher.process.terminate()
        launcher.process.wait(timeout=60)
    logs = launcher.log()
    assert "request" in logs.lower(), "the services logged nothing: the search below would prove nothing"
    for name, secret in {
        "API key": api_key, "wrong key": "sk-wrong-", "Fernet key": fernet_key.decode(), "Fernet token": token.decode()[:40],
        "tampered token": tampered[:40], "prompt": marker,
    }.items():
        assert secret not in logs, f"the {name} appears in the logs"
    if len(answer.strip()) >= 12:  # a distinctive enough piece of generated text
        assert answer.strip() not in logs, "the answer appears in the logs"
