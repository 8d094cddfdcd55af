"""Start the four services as local processes, in dependency order, for `make run`.

engine -> memory -> router -> gateway: each starts only once the one before it
answers its health check. Ctrl-C (or SIGTERM) stops them in reverse order and
waits for each; a child that will not stop is killed, and every child is tied
to this process (PR_SET_PDEATHSIG) so none outlives it even on SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from quartet.services.common import health_probe
from quartet.services.common.settings import DEFAULT_ENGINE_ADDRESS, DEFAULT_MEMORY_ADDRESS, DEFAULT_ROUTER_ADDRESS

_PR_SET_PDEATHSIG = 1


@dataclass(slots=True)
class Topology:
    """Where each service listens; read from the same variables the services use."""

    engine_address: str = DEFAULT_ENGINE_ADDRESS
    memory_address: str = DEFAULT_MEMORY_ADDRESS
    router_address: str = DEFAULT_ROUTER_ADDRESS
    host: str = "127.0.0.1"
    port: int = 8000

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Topology:
        port = env.get("PORT", "8000")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SystemExit(f"PORT must be a TCP port number (1-65535), got {port!r}")
        return cls(
            engine_address=env.get("ENGINE_ADDRESS", DEFAULT_ENGINE_ADDRESS),
            memory_address=env.get("MEMORY_ADDRESS", DEFAULT_MEMORY_ADDRESS),
            router_address=env.get("ROUTER_ADDRESS", DEFAULT_ROUTER_ADDRESS),
            host=env.get("HOST", "127.0.0.1"),
            port=int(port),
        )

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def child_env(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        env.update(
            ENGINE_ADDRESS=self.engine_address,
            ENGINE_LISTEN=self.engine_address,
            MEMORY_ADDRESS=self.memory_address,
            MEMORY_LISTEN=self.memory_address,
            ROUTER_ADDRESS=self.router_address,
            ROUTER_LISTEN=self.router_address,
            HOST=self.host,
            PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        return env


@dataclass(slots=True)
class ServiceSpec:
    name: str
    module: str
    probe: Callable[[], str]
    start_timeout: float


@dataclass
class Launcher:
    topology: Topology
    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def specs(self) -> list[ServiceSpec]:
        t = self.topology
        model_timeout = float(self.env.get("ENGINE_START_TIMEOUT", "300"))
        return [
            ServiceSpec("engine", "quartet.services.engine", lambda: health_probe.grpc_status(t.engine_address), model_timeout),
            ServiceSpec("memory", "quartet.services.memory", lambda: health_probe.grpc_status(t.memory_address), 60),
            ServiceSpec("router", "quartet.services.router", lambda: health_probe.grpc_status(t.router_address), 60),
            ServiceSpec("gateway", "quartet.services.gateway", lambda: health_probe.http_status(f"{t.gateway_url}/healthz"), 60),
        ]

    def _spawn(self, spec: ServiceSpec) -> subprocess.Popen:
        def tie_to_parent() -> None:
            # A child must not outlive the launcher, even if the launcher is SIGKILLed.
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

        process = subprocess.Popen(
            [sys.executable, "-m", spec.module],
            env=self.topology.child_env(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=tie_to_parent if sys.platform.startswith("linux") else None,
            # Own process group: the terminal's Ctrl-C reaches the launcher only,
            # which then stops the children in reverse dependency order.
            start_new_session=True,
        )
        threading.Thread(target=_prefix_output, args=(spec.name, process), daemon=True).start()
        return process

    def start(self) -> None:
        for spec in self.specs():
            if self._stopping.is_set():
                return
            process = self._spawn(spec)
            print(f"[launcher] started {spec.name} (pid {process.pid})", flush=True)
            self.processes.append((spec.name, process))
            status = health_probe.wait_until_serving(
                spec.probe, timeout=spec.start_timeout, alive=lambda: process.poll() is None and not self._stopping.is_set()
            )
            if status != "SERVING":
                if self._stopping.is_set():
                    return
                reason = f"exited with status {process.returncode}" if process.poll() is not None else f"health is {status} after {spec.start_timeout:.0f}s"
                raise RuntimeError(f"{spec.name} did not become healthy: {reason}; see its log lines above")
            print(f"[launcher] {spec.name} is serving", flush=True)

    def stop(self, grace: float = 10.0) -> None:
        self._stopping.set()
        for name, process in reversed(self.processes):
            if process.poll() is None:
                print(f"[launcher] stopping {name} ...", flush=True)
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    print(f"[launcher] {name} did not stop in {grace:.0f}s; killing it", flush=True)
                    process.kill()
                    process.wait()

    def wait_any_exit(self) -> tuple[str, int] | None:
        """Block until a child exits (returns it) or a stop is requested (returns None)."""
        while not self._stopping.wait(0.5):
            for name, process in self.processes:
                if process.poll() is not None:
                    return name, process.returncode
        return None


def _prefix_output(name: str, process: subprocess.Popen) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        sys.stdout.write(f"[{name}] {raw.decode(errors='replace')}")
        sys.stdout.flush()


def main() -> int:
    launcher = Launcher(Topology.from_env(dict(os.environ)), dict(os.environ))

    def request_stop(signum: int, _frame: object) -> None:
        launcher._stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        launcher.start()
        if not launcher._stopping.is_set():
            url = launcher.topology.gateway_url
            print(
                f"\nQuartet is up: {url}  (OpenAI base URL {url}/v1)\n"
                f"  curl -N {url}/v1/chat/completions -H 'Content-Type: application/json' "
                "-d '{\"model\":\"HuggingFaceTB/SmolLM2-135M-Instruct\",\"stream\":true,"
                "\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}'\n"
                "Press Ctrl-C to stop.\n",
                flush=True,
            )
            exited = launcher.wait_any_exit()
            if exited is not None:
                print(f"[launcher] {exited[0]} exited with status {exited[1]}; stopping the others", flush=True)
                code = 1
    except RuntimeError as error:
        print(f"[launcher] {error}", flush=True)
        code = 1
    finally:
        launcher.stop()
    print("[launcher] all services stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
