"""Soak: concurrent streams through the gateway on CPU, with a slow reader among them.

    .venv/bin/python benchmarks/load.py [--streams 32] [--seconds 120] [--max-tokens 32]

Starts the suite as `make run` does (the launcher, on free ports), then keeps ``--streams``
chat streams going for ``--seconds``: each stream asks, reads its SSE answer to [DONE], and asks
again; stream 0 reads one event every 0.2 s (a slow client, which backpressure must hold back
without growing memory). Prints one table: requests, errors (non-200, error events, missing
[DONE], timeouts), tokens/s, and each service's resident memory (VmRSS) before and after.
Not a speed comparison (no peer runs here): a check that load leaves no errors and no growth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPTS = ["Tell me about owls.", "What is the capital of France?", "Write a haiku about rain.", "Name three colours."]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


class Stats:
    def __init__(self) -> None:
        self.requests = self.errors = self.tokens = 0
        self.kinds: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


async def stream_loop(index: int, url: str, until: float, max_tokens: int, stats: Stats) -> None:
    slow = index == 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while time.monotonic() < until:
            body = {"model": MODEL, "stream": True, "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": PROMPTS[(index + stats.requests) % len(PROMPTS)]}]}
            stats.requests += 1
            try:
                async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
                    if reply.status_code != 200:
                        stats.error(f"HTTP {reply.status_code}")
                        await reply.aread()
                        continue
                    done = False
                    async for line in reply.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        if slow:
                            await asyncio.sleep(0.2)
                        payload = line[6:]
                        if payload == "[DONE]":
                            done = True
                            break
                        event = json.loads(payload)
                        if "error" in event:
                            stats.error("error event")
                        elif event.get("choices") and event["choices"][0]["delta"].get("content"):
                            stats.tokens += 1
                    if not done:
                        stats.error("no [DONE]")
            except httpx.HTTPError as error:
                stats.error(type(error).__name__)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "ENGINE_ADDRESS": f"127.0.0.1:{free_port()}",
           "MEMORY_ADDRESS": f"127.0.0.1:{free_port()}", "ROUTER_ADDRESS": f"127.0.0.1:{free_port()}",
           "LOG_LEVEL": "WARNING"}
    launcher = subprocess.Popen([sys.executable, "-m", "quartet.services.launcher"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    up = threading.Event()

    def read() -> None:
        for line in launcher.stdout:
            lines.append(line)
            if line.startswith("Quartet is up"):
                up.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not up.wait(300):
            print("".join(lines[-40:]))
            return 1
        pids = {m.group(1): int(m.group(2)) for m in (re.match(r"\[launcher\] started (\w+) \(pid (\d+)\)", l) for l in lines) if m}
        before = {name: rss_mib(pid) for name, pid in pids.items()}
        stats = Stats()
        started = time.monotonic()
        until = started + args.seconds

        async def run() -> None:
            await asyncio.gather(*(stream_loop(i, f"http://127.0.0.1:{port}", until, args.max_tokens, stats) for i in range(args.streams)))

        asyncio.run(run())
        elapsed = time.monotonic() - started
        after = {name: rss_mib(pid) for name, pid in pids.items()}
        restarts = sum("died" in l for l in lines)
        print(f"\n{args.streams} streams (stream 0 reads one event per 0.2 s), {elapsed:.0f} s, max_tokens {args.max_tokens}, "
              f"nproc {os.cpu_count()}")
        print("| requests | errors | content tokens | tokens/s | service restarts |")
        print("|---|---|---|---|---|")
        print(f"| {stats.requests} | {stats.errors} {stats.kinds or ''} | {stats.tokens} | {stats.tokens / elapsed:.1f} | {restarts} |")
        print("\n| service | RSS before (MiB) | RSS after (MiB) |")
        print("|---|---|---|")
        for name in pids:
            print(f"| {name} | {before[name]:.0f} | {after[name]:.0f} |")
        return 0 if stats.errors == 0 and restarts == 0 else 1
    finally:
        launcher.terminate()
        launcher.wait(60)


if __name__ == "__main__":
    sys.exit(main())
