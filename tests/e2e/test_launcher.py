"""The suite as `make run` starts it: four real processes, in order, then a streamed answer.

Stops it the way a user does (Ctrl-C, i.e. SIGINT to the launcher) and checks no process is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LauncherProcess:
    """`python -m quartet.services.launcher` with its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.up = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quartet.services.launcher"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("Quartet is up"):
                self.up.set()

    def child_pids(self) -> dict[str, int]:
        """Each service's current pid: the newest "started" or "restarted" line wins."""
        found = (re.match(r"\[launcher\] (?:re)?started (\w+) \(pid (\d+)\)", line) for line in self.lines)
        return {m.group(1): int(m.group(2)) for m in found if m}

    def log(self) -> str:
        """Everything so far (``output`` keeps only the tail, for failure messages)."""
        return "".join(self.lines)

    def output(self) -> str:
        return "".join(self.lines[-80:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def suite_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment, with the four services on free ports and the database in ``tmp_path``."""
    env = dict(os.environ)
    env.update(
        PORT=str(_free_port()),
        ENGINE_ADDRESS=f"127.0.0.1:{_free_port()}",
        MEMORY_ADDRESS=f"127.0.0.1:{_free_port()}",
        ROUTER_ADDRESS=f"127.0.0.1:{_free_port()}",
        MEMORY_DB_PATH=str(tmp_path / "memory.sqlite3"),
        **extra,
    )
    return env


@pytest.fixture()
def suite(tmp_path: Path):
    env = suite_env(tmp_path)
    port = env["PORT"]
    launcher = LauncherProcess(env)
    if not launcher.up.wait(timeout=300):
        launcher.process.kill()
        pytest.fail(f"the suite did not come up in 300 s:\n{launcher.output()}")
    yield launcher, f"http://127.0.0.1:{port}"
    if launcher.process.poll() is None:
        launcher.process.kill()


def test_make_run_answers_and_stops_cleanly(suite) -> None:
    launcher, url = suite
    pids = launcher.child_pids()
    assert list(pids) == ["engine", "memory", "router", "gateway"], launcher.output()

    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        temperature=0,
        max_tokens=48,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) > 1, "expected the answer in several streamed pieces"
    assert "Paris" in "".join(pieces)

    launcher.process.send_signal(signal.SIGINT)
    assert launcher.process.wait(timeout=60) == 0, launcher.output()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, pid in pids.items() if _alive(pid)], launcher.output()
    assert "all services stopped" in launcher.output()
