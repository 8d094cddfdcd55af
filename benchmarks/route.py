"""Routing latency under load: Route decisions while N topic turns stream in the engine.

    python -m benchmarks.route [--loads 0,2,4,8,12] [--routes 8] [--engine HOST:PORT]

Without ``--engine`` it starts ``python -m quartet.services.engine`` as a process (the bundled
model, settings from the environment, e.g. ENGINE_MAX_NUM_SEQS) on a free port; memory
(a temp SQLite file) and the router run in this process, as real gRPC servers. For each
load N it keeps N topic turns streaming (each restarted when it ends), then times
``--routes`` Route calls one after another, twice: with the router agent's priority
(router, the engine's highest) and with the same agent at default priority. The gap
between the two columns is what the engine's priority queue buys. The same routing
prompt is also sent straight to the engine without its grammar, at both priorities,
which isolates the queue from the constraint path. Prints a markdown table for
docs/perf-log/routing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import grpc
from quartet.router.v1 import router_pb2 as pb
from quartet.router.v1 import router_pb2_grpc

from quartet.services.common.errors import QuartetError
from quartet.services.common.grpc_server import CHANNEL_OPTIONS
from quartet.services.memory.core import MemoryCore
from quartet.services.memory.server import create_server as create_memory_server
from quartet.services.memory.sqlite_store import SqliteStore
from quartet.services.router.agents import Agent, AgentRegistry, Priority
from quartet.services.router.config import load_agents
from quartet.services.router.core import RouterCore
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.library import Library
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.routing import route_request
from quartet.services.router.server import create_server as create_router_server
from quartet.services.router.settings import REPO_ROOT, RouterSettings

TOPIC_PROMPT = "Tell me a long story about a lighthouse keeper and a storm."
ROUTE_INPUTS = ["Where is Boston?", "Is it raining in Oslo?", "Tell me a joke", "Where is Nairobi?"]
ENGINE_START_TIMEOUT = 300.0


async def start_engine(log_path: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Start the engine with its logs in ``log_path`` (a file, so they can never fill a pipe and
    stall it), and read its port from the 'serving' line."""
    env = {**os.environ, "ENGINE_LISTEN": "127.0.0.1:0"}
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quartet.services.engine", cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file
        )
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "serving":
                return process, f"127.0.0.1:{entry['port']}"
        if process.returncode is not None:
            raise SystemExit(f"the engine exited with {process.returncode} before serving; see {log_path}")
        await asyncio.sleep(0.2)
    process.kill()
    raise SystemExit(f"the engine did not serve within {ENGINE_START_TIMEOUT:.0f} s; see {log_path}")


def bench_agents() -> AgentRegistry:
    settings = RouterSettings(_env_file=None)
    agents = load_agents(settings.agents_file, Library(settings.prompts_dir, settings.schemas_dir, settings.grammars_dir))
    router = agents.get("router")
    chat = agents.get("assistant")  # no memory: the load is the engine's, not memory's
    return AgentRegistry([
        router,
        replace(router, name="router-default", priority=Priority.DEFAULT),
        replace(chat, name="load", generation=replace(chat.generation, max_tokens=256)),
    ])


async def keep_streaming(stub: router_pb2_grpc.RouterServiceStub, stop: asyncio.Event, started: asyncio.Event, counter: list[int]) -> None:
    while not stop.is_set():
        call = stub.Run(pb.RunRequest(agent="load", input=TOPIC_PROMPT))
        try:
            async for event in call:
                if event.HasField("token"):
                    started.set()
                    counter[0] += 1
                if stop.is_set():
                    call.cancel()
                    return
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                print(f"topic stream failed: {error.code().name}: {error.details()}", file=sys.stderr)
                started.set()
                return


ROUTE_TIMEOUT = 30.0


async def time_routes(stub: router_pb2_grpc.RouterServiceStub, agent: str, count: int) -> list[float | None]:
    """Seconds per Route call, one after another; None for a call that failed or timed out."""
    latencies: list[float | None] = []
    for i in range(count):
        started = time.perf_counter()
        try:
            await stub.Route(pb.RouteRequest(input=ROUTE_INPUTS[i % len(ROUTE_INPUTS)], agent=agent), timeout=ROUTE_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            print(f"Route failed: {error.code().name}: {error.details()}", file=sys.stderr)
            latencies.append(None)
            continue
        latencies.append(time.perf_counter() - started)
    return latencies


async def time_engine(engine: EngineClient, agent: Agent, priority: Priority, count: int) -> list[float | None]:
    """The routing prompt straight to the engine at ``priority``, without the grammar: the
    engine's queue alone, so the priority effect shows even where constraints fail."""
    latencies: list[float | None] = []
    for i in range(count):
        request = replace(
            route_request(agent, ROUTE_INPUTS[i % len(ROUTE_INPUTS)], f"bench-{uuid.uuid4().hex}"),
            grammar="", json_schema="", stop=("\n",), priority=priority,
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(ROUTE_TIMEOUT):
                async for _ in engine.generate(request):
                    pass
        except (TimeoutError, QuartetError) as error:
            print(f"engine request failed: {error!r}", file=sys.stderr)
            latencies.append(None)
            continue
        latencies.append(time.perf_counter() - started)
    return latencies


def cell(values: list[float | None]) -> str:
    """p50 / p90 of the successful calls, and how many failed."""
    done = sorted(v for v in values if v is not None)
    if not done:
        return f"all {len(values)} failed"
    p90 = done[min(len(done) - 1, int(0.9 * len(done)))]
    failed = len(values) - len(done)
    return f"{statistics.median(done):.2f} / {p90:.2f} s" + (f" ({failed} of {len(values)} failed)" if failed else "")


async def measure(
    stub: router_pb2_grpc.RouterServiceStub, engine: EngineClient, router: Agent, load: int, routes: int, with_route: bool
) -> dict[str, str | float]:
    stop = asyncio.Event()
    counter = [0]
    started = [asyncio.Event() for _ in range(load)]
    streams = [asyncio.create_task(keep_streaming(stub, stop, s, counter)) for s in started]
    print(f"load {load}: waiting for {load} streams", file=sys.stderr)
    await asyncio.gather(*(s.wait() for s in started))
    t0, c0 = time.perf_counter(), counter[0]
    # The engine-only columns first: a Route that breaks the engine must not spoil them.
    row: dict[str, str | float] = {
        "engine_router": cell(await time_engine(engine, router, Priority.ROUTER, routes)),
        "engine_default": cell(await time_engine(engine, router, Priority.DEFAULT, routes)),
        "route_router": cell(await time_routes(stub, "router", routes)) if with_route else "not run",
        "route_default": cell(await time_routes(stub, "router-default", routes)) if with_route else "not run",
    }
    row["topic_tps"] = (counter[0] - c0) / (time.perf_counter() - t0)
    stop.set()
    # A stream ends at its next token; one whose engine stalled never would, so give them a moment, then cancel.
    _, pending = await asyncio.wait(streams, timeout=10) if streams else (set(), set())
    for task in pending:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    print(f"load {load}: {row}", file=sys.stderr)
    return row


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine_process = None
        engine_address = args.engine
        if not engine_address:
            engine_process, engine_address = await start_engine(Path(folder) / "engine.log")
        memory_core = MemoryCore(await SqliteStore.open(Path(folder) / "bench.sqlite3"))
        memory = create_memory_server("127.0.0.1:0", memory_core)
        await memory.start()
        core = RouterCore(bench_agents(), EngineClient(engine_address), MemoryClient(f"127.0.0.1:{memory.port}"))
        router = create_router_server("127.0.0.1:0", core)
        await router.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{router.port}", options=CHANNEL_OPTIONS) as channel:
                stub = router_pb2_grpc.RouterServiceStub(channel)
                await time_routes(stub, "router", 2)  # warm-up (alone in the engine): grammar compile, first prefill
                rows = [
                    (load, await measure(stub, core.engine, core.agents.get("router"), load, args.routes, not args.no_route))
                    for load in args.loads
                ]
        finally:
            await router.stop(None)
            await core.close()
            await memory.stop(None)
            await memory_core.close()
            if engine_process is not None:
                engine_process.terminate()
                try:
                    await asyncio.wait_for(engine_process.wait(), 15)
                except TimeoutError:
                    engine_process.kill()
                    await engine_process.wait()
    print(f"Routing decision latency, p50 / p90 of {args.routes} calls per cell, one at a time; "
          f"{platform.machine()}, {os.cpu_count()} CPUs; ENGINE_MAX_NUM_SEQS={os.environ.get('ENGINE_MAX_NUM_SEQS', 'default')}; "
          f"a call failing or past {ROUTE_TIMEOUT:.0f} s counts as failed\n")
    print("| topic turns streaming | Route, router priority | Route, default priority "
          "| engine only, router priority | engine only, default priority | topic tokens/s (all streams) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for load, r in rows:
        print(f"| {load} | {r['route_router']} | {r['route_default']} | {r['engine_router']} | {r['engine_default']} | {r['topic_tps']:.1f} |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=lambda s: [int(x) for x in s.split(",")], default=[0, 2, 4, 8, 12])
    parser.add_argument("--routes", type=int, default=8)
    parser.add_argument("--engine", default="", help="a running engine's address; default: start one")
    parser.add_argument("--no-route", action="store_true", help="only the engine-only columns under load (Route calls skipped)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
