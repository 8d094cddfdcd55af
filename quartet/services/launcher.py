"""Start the four services as local processes, in dependency order, and keep them up, for `make run`.

engine -> memory -> router -> gateway: each starts only once the one before it
answers its health check. Then the launcher supervises: a service that dies is
logged with why (its exit status or the signal that killed it) and started again
after an exponential back-off (0.5 s, 1 s, 2 s, ... up to 30 s), while the others
keep serving; the gateway answers 503 with Retry-After for what needs the missing
service, and its channels reconnect once it is back. A service that fails
``LAUNCHER_MAX_RESTARTS`` times (5) within ``LAUNCHER_RESTART_WINDOW_SECONDS``
(300) is given up on, loudly, and the launcher stops the rest and exits 1, as
systemd's StartLimitBurst does. Ctrl-C (or SIGTERM) stops them in reverse order
and waits for each; a child that will not stop is killed, and every child is
tied to this process (PR_SET_PDEATHSIG) so none outlives it even on SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
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
    #: The command, when it is not ``python -m module`` (tests start a fault-injecting stand-in).
    argv: list[str] | None = None


@dataclass(slots=True)
class RestartPolicy:
    """When a dead service is started again, and when the launcher gives up on it."""

    max_restarts: int = 5
    window_seconds: float = 300.0
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_seconds <= 0 or not 0 < self.initial_backoff_seconds <= self.max_backoff_seconds:
            raise SystemExit(f"invalid restart policy {self}: restarts >= 0, window > 0, 0 < initial backoff <= max")

    @classmethod
    def from_env(cls, env: dict[str, str]) -> RestartPolicy:
        def number(name: str, default: float, kind: type = float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                raise SystemExit(f"{name} must be a {'whole ' if kind is int else ''}number, got {raw!r}") from None

        return cls(
            max_restarts=int(number("LAUNCHER_MAX_RESTARTS", 5, int)),
            window_seconds=number("LAUNCHER_RESTART_WINDOW_SECONDS", 300.0),
            initial_backoff_seconds=number("LAUNCHER_RESTART_BACKOFF_SECONDS", 0.5),
        )

    def backoff(self, num_recent_failures: int) -> float:
        return min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** max(0, num_recent_failures - 1))


def death_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class Launcher:
    topology: Topology
    env: dict[str, str]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _specs: dict[str, ServiceSpec] = field(default_factory=dict)

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
            spec.argv or [sys.executable, "-m", spec.module],
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

    def start(self, specs: list[ServiceSpec] | None = None) -> None:
        for spec in specs if specs is not None else self.specs():
            if self._stopping.is_set():
                return
            self._specs[spec.name] = spec
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

    def supervise(self) -> int:
        """Keep every service up until a stop is requested (returns 0) or one is given up on (1)."""
        failures: dict[str, deque[float]] = {name: deque() for name, _ in self.processes}
        restart_at: dict[str, float] = {}
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            for index, (name, process) in enumerate(self.processes):
                if name in restart_at:
                    if now >= restart_at[name]:
                        del restart_at[name]
                        self._restart(index, name)
                    continue
                if process.poll() is None:
                    continue
                recent = failures[name]
                recent.append(now)
                while recent and now - recent[0] > self.policy.window_seconds:
                    recent.popleft()
                reason = death_reason(process.returncode)
                if len(recent) > self.policy.max_restarts:
                    print(
                        f"[launcher] GIVING UP on {name}: it died {len(recent)} times within "
                        f"{self.policy.window_seconds:.0f} s (last: {reason}); see its log lines above. "
                        "Stopping the other services.",
                        flush=True,
                    )
                    return 1
                delay = self.policy.backoff(len(recent))
                print(
                    f"[launcher] {name} died ({reason}); restarting it in {delay:.1f} s "
                    f"(failure {len(recent)} of {self.policy.max_restarts + 1} allowed in {self.policy.window_seconds:.0f} s); "
                    "the other services keep serving",
                    flush=True,
                )
                restart_at[name] = now + delay
        return 0

    def _restart(self, index: int, name: str) -> None:
        spec = self._specs[name]
        process = self._spawn(spec)
        self.processes[index] = (name, process)
        print(f"[launcher] restarted {name} (pid {process.pid})", flush=True)

        def report() -> None:
            status = health_probe.wait_until_serving(
                spec.probe, timeout=spec.start_timeout, alive=lambda: process.poll() is None and not self._stopping.is_set()
            )
            if status == "SERVING":
                print(f"[launcher] {name} is serving again", flush=True)

        threading.Thread(target=report, name=f"health-{name}", daemon=True).start()


def _prefix_output(name: str, process: subprocess.Popen) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        sys.stdout.write(f"[{name}] {raw.decode(errors='replace')}")
        sys.stdout.flush()


def main() -> int:
    env = dict(os.environ)
    launcher = Launcher(Topology.from_env(env), env, RestartPolicy.from_env(env))

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
            code = launcher.supervise()
    except RuntimeError as error:
        print(f"[launcher] {error}", flush=True)
        code = 1
    finally:
        launcher.stop()
    print("[launcher] all services stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
