"""Routing latency under load: Route decisions while N topic turns stream in the engine.

    python -m services.router.bench_route [--loads 0,2,4,8,12] [--routes 8] [--engine HOST:PORT]

Without ``--engine`` it starts ``python -m services.engine`` as a process (the bundled
model, settings from the environment, e.g. ENGINE_MAX_NUM_SEQS) on a free port; memory
(a temp SQLite file) and the router run in this process, as real gRPC servers. For each
load N it keeps N topic turns streaming (each restarted when it ends), then times
``--routes`` Route calls one after another, twice: with the router agent's priority
(router, the engine's highest) and with the same agent at default priority. The gap
between the two columns is what the engine's priority queue buys. Prints a markdown
table for docs/PERFORMANCE.md.
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
from dataclasses import replace
from pathlib import Path

import grpc
from quartet.router.v1 import router_pb2 as pb
from quartet.router.v1 import router_pb2_grpc

from services.common.grpc_server import CHANNEL_OPTIONS
from services.memory.core import MemoryCore
from services.memory.server import create_server as create_memory_server
from services.memory.sqlite_store import SqliteStore
from services.router.agents import AgentRegistry, Priority
from services.router.config import load_agents
from services.router.core import RouterCore
from services.router.engine_client import EngineClient
from services.router.library import Library
from services.router.memory_client import MemoryClient
from services.router.server import create_server as create_router_server
from services.router.settings import REPO_ROOT, RouterSettings

TOPIC_PROMPT = "Tell me a long story about a lighthouse keeper and a storm."
ROUTE_INPUTS = ["Where is Boston?", "Is it raining in Oslo?", "Tell me a joke", "Where is Nairobi?"]
ENGINE_START_TIMEOUT = 300.0


async def start_engine() -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "ENGINE_LISTEN": "127.0.0.1:0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.engine", cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )

    async def port() -> int:
        async for line in process.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "serving":
                return int(entry["port"])
        raise SystemExit(f"the engine exited with {await process.wait()} before serving")

    found = await asyncio.wait_for(port(), ENGINE_START_TIMEOUT)
    asyncio.get_running_loop().create_task(process.stderr.read())  # keep draining its logs
    return process, f"127.0.0.1:{found}"


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
                raise


async def time_routes(stub: router_pb2_grpc.RouterServiceStub, agent: str, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        await stub.Route(pb.RouteRequest(input=ROUTE_INPUTS[i % len(ROUTE_INPUTS)], agent=agent))
        latencies.append(time.perf_counter() - started)
    return latencies


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(stub: router_pb2_grpc.RouterServiceStub, load: int, routes: int) -> dict[str, float]:
    stop = asyncio.Event()
    counter = [0]
    started = [asyncio.Event() for _ in range(load)]
    streams = [asyncio.create_task(keep_streaming(stub, stop, s, counter)) for s in started]
    await asyncio.gather(*(s.wait() for s in started))
    t0, c0 = time.perf_counter(), counter[0]
    fast = await time_routes(stub, "router", routes)
    slow = await time_routes(stub, "router-default", routes)
    tokens_per_second = (counter[0] - c0) / (time.perf_counter() - t0)
    stop.set()
    await asyncio.gather(*streams)
    return {
        "router_p50": statistics.median(fast), "router_p90": p(fast, 0.9),
        "default_p50": statistics.median(slow), "default_p90": p(slow, 0.9),
        "topic_tps": tokens_per_second,
    }


async def main(args: argparse.Namespace) -> None:
    engine_process = None
    engine_address = args.engine
    if not engine_address:
        engine_process, engine_address = await start_engine()
    with tempfile.TemporaryDirectory() as folder:
        memory_core = MemoryCore(await SqliteStore.open(Path(folder) / "bench.sqlite3"))
        memory = create_memory_server("127.0.0.1:0", memory_core)
        await memory.start()
        core = RouterCore(bench_agents(), EngineClient(engine_address), MemoryClient(f"127.0.0.1:{memory.port}"))
        router = create_router_server("127.0.0.1:0", core)
        await router.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{router.port}", options=CHANNEL_OPTIONS) as channel:
                stub = router_pb2_grpc.RouterServiceStub(channel)
                await time_routes(stub, "router", 2)  # warm-up: grammar compile, first prefill
                rows = [(load, await measure(stub, load, args.routes)) for load in args.loads]
        finally:
            await router.stop(None)
            await core.close()
            await memory.stop(None)
            await memory_core.close()
            if engine_process is not None:
                engine_process.terminate()
                await engine_process.wait()
    print(f"Routing decision latency, {args.routes} Route calls per cell, one at a time; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; ENGINE_MAX_NUM_SEQS={os.environ.get('ENGINE_MAX_NUM_SEQS', 'default')}\n")
    print("| topic turns streaming | Route p50 (router priority) | p90 | Route p50 (default priority) | p90 | topic tokens/s (all streams) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for load, r in rows:
        print(f"| {load} | {r['router_p50']:.2f} s | {r['router_p90']:.2f} s | {r['default_p50']:.2f} s | {r['default_p90']:.2f} s | {r['topic_tps']:.1f} |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=lambda s: [int(x) for x in s.split(",")], default=[0, 2, 4, 8, 12])
    parser.add_argument("--routes", type=int, default=8)
    parser.add_argument("--engine", default="", help="a running engine's address; default: start one")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
