"""CPU benchmark: our engine against Hugging Face ``generate`` on the bundled model.

    python -m benchmarks.engine_cpu [--new-tokens 128] [--repeats 3] [--concurrency 8] [--gateway URL]

Every row streams the same chat prompt, greedy, ``ignore_eos`` (so every run
produces exactly ``--new-tokens`` tokens), and reports the median over
``--repeats`` runs. Our engine is measured through its real gRPC server (a
port-0 server in this process, the client on another event loop), so the
figures include serialization and streaming. Rows:

* our engine with int8 weights (the CPU default, ``ENGINE_WEIGHT_FORMAT=auto``)
  and with dense fp32 weights (the parity reference), one request, then
  ``--concurrency`` concurrent requests;
* transformers ``generate`` for one request; the same ``--concurrency``
  requests served one after another (what a server built on ``generate``
  does with independent requests); and as one static batch (its best case,
  shown for honesty: identical prompts padded into one tensor).

Systems alternate repeat by repeat so each sees the same machine load. Prints
the table and the issue's targets (decode at batch 1 >= 2x transformers,
aggregate at ``--concurrency`` >= 5x transformers one after another) as
pass/miss, ready for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import quartet.services.engine  # noqa: F401 - sets the OpenMP wait policy before torch loads

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass

import grpc
import torch
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS, GrpcServer
from quartet.services.engine.core import EngineCore
from quartet.services.engine.model_cache import BUNDLED_MODEL_ID, ensure_bundled_model
from quartet.services.engine.api.server import create_server
from quartet.services.engine.settings import EngineSettings

PROMPT = "Write a long story about a dragon who learns to bake bread."
#: llama.cpp's batch-1 decode with a 4-bit file of the same model on this kind of 2-core machine (issue 4).
LLAMA_CPP_TOKENS_PER_SECOND = 78.0


@dataclass
class Row:
    path: str
    concurrency: int
    ttft_seconds: float
    decode_tokens_per_second: float  # per request, after the first token
    aggregate_tokens_per_second: float  # all requests' tokens over wall time


@dataclass
class Run:
    ttft: float
    decode_tps: float
    tokens: int
    wall: float


def _row(path: str, concurrency: int, runs: list[list[Run]]) -> Row:
    """runs: one list of per-request Runs for each repeat."""
    ttft = statistics.median(r.ttft for repeat in runs for r in repeat)
    decode = statistics.median(r.decode_tps for repeat in runs for r in repeat)
    aggregate = statistics.median(sum(r.tokens for r in repeat) / max(r.wall for r in repeat) for repeat in runs)
    return Row(path, concurrency, ttft, decode, aggregate)


# --- our engine over gRPC -------------------------------------------------------------------------


class EngineClient:
    """An engine core behind a port-0 gRPC server, and a client streaming the benchmark request from it."""

    def __init__(self, core: EngineCore, server: GrpcServer, new_tokens: int) -> None:
        self.core = core
        self.server = server
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=CHANNEL_OPTIONS)
        self.stub = engine_pb2_grpc.EngineServiceStub(self.channel)
        self.new_tokens = new_tokens

    @classmethod
    async def start(cls, settings: EngineSettings, new_tokens: int) -> EngineClient:
        core = await asyncio.to_thread(EngineCore.from_settings, settings)
        server = create_server("127.0.0.1:0", core)
        await server.start()
        client = cls(core, server, new_tokens)
        await client._stream(8, time.perf_counter())  # warm-up
        return client

    async def _stream(self, new_tokens: int, started: float) -> Run:
        request = pb.GenerateRequest(
            chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content=PROMPT)]),
            sampling=pb.SamplingParams(temperature=0),
            stopping=pb.StoppingCriteria(max_tokens=new_tokens, ignore_eos=True),
        )
        first = last = 0.0
        tokens = 0
        async for response in self.stub.Generate(request):
            if response.WhichOneof("event") == "chunk":
                last = time.perf_counter()
                first = first or last
                tokens += len(response.chunk.token_ids)
        return Run(first - started, (tokens - 1) / (last - first), tokens, last - started)

    async def run(self, concurrency: int) -> list[Run]:
        started = time.perf_counter()
        return list(await asyncio.gather(*(self._stream(self.new_tokens, started) for _ in range(concurrency))))

    async def close(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        await self.core.close()


# --- Hugging Face generate ------------------------------------------------------------------------


def transformers_run(model, prompt_ids: list[int], new_tokens: int, batch: int) -> list[Run]:
    """One timed generate of ``batch`` copies of the prompt (static batching: HF's best case)."""
    ids = torch.tensor([prompt_ids] * batch)
    kwargs = dict(
        attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=model.generation_config.eos_token_id
    )
    with torch.inference_mode():
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
        ttft = time.perf_counter() - started
        started = time.perf_counter()
        # min_new_tokens keeps EOS away, like ignore_eos on our side.
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
        wall = time.perf_counter() - started
    return [Run(ttft, (new_tokens - 1) / max(wall - ttft, 1e-9), new_tokens, wall)] * batch


def transformers_sequential(model, prompt_ids: list[int], new_tokens: int, count: int) -> list[Run]:
    """``count`` requests served one after another; each Run's wall is its finish time since the first started."""
    runs = []
    offset = 0.0
    for _ in range(count):
        (run, *_) = transformers_run(model, prompt_ids, new_tokens, 1)
        # The TTFT probe inside transformers_run is not part of serving: only the real generate counts.
        runs.append(Run(offset + run.ttft, run.decode_tps, run.tokens, offset + run.wall))
        offset += run.wall
    return runs


# --- through the gateway --------------------------------------------------------------------------


def bench_gateway(url: str, new_tokens: int, repeats: int) -> list[list[Run]]:
    import httpx

    body = {
        "model": BUNDLED_MODEL_ID,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": new_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # vLLM's extension, so the run is exactly new_tokens long
    }
    results = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            first = last = 0.0
            tokens = 0
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
                        last = time.perf_counter()
                        first = first or last
                    if event.get("usage"):
                        tokens = event["usage"]["completion_tokens"]
            if attempt:  # the first run warms up
                results.append([Run(first - started, (tokens - 1) / max(last - first, 1e-9), tokens, last - started)])
    return results


# --- the table ------------------------------------------------------------------------------------


def machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}"


def table(rows: list[Row]) -> str:
    lines = [
        "| Path | Concurrent requests | TTFT (s) | Decode tok/s per request | Aggregate tok/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.path} | {r.concurrency} | {r.ttft_seconds:.3f} | {r.decode_tokens_per_second:.1f} "
            f"| {r.aggregate_tokens_per_second:.1f} |"
        )
    return "\n".join(lines)


def targets(rows: dict[tuple[str, int], Row], n: int) -> list[str]:
    hf1 = rows[(HF_LABEL, 1)]
    sequential = rows[(HF_SEQUENTIAL_LABEL, n)]
    lines = []
    for label in ENGINE_LABELS.values():
        if (label, 1) not in rows:
            continue
        one, many = rows[(label, 1)], rows[(label, n)]
        decode = one.decode_tokens_per_second / hf1.decode_tokens_per_second
        aggregate = many.aggregate_tokens_per_second / sequential.aggregate_tokens_per_second
        llama = one.decode_tokens_per_second / LLAMA_CPP_TOKENS_PER_SECOND
        lines.append(
            f"- {label}: batch-1 decode {decode:.2f}x transformers (target 2x: {'pass' if decode >= 2 else 'miss'}); "
            f"{n} concurrent {aggregate:.2f}x transformers one after another "
            f"(target 5x: {'pass' if aggregate >= 5 else 'miss'}); {llama:.0%} of llama.cpp's ~78 tok/s at batch 1"
        )
    return lines


ENGINE_LABELS = {
    "fp32": "Quartet engine, dense fp32 weights (parity reference)",
    "int8": "Quartet engine, int8 weights (CPU default)",
    "bf16": "Quartet engine, dense bf16 weights (ENGINE_DTYPE=bfloat16)",
}
HF_LABEL = "HF transformers generate, fp32"
HF_SEQUENTIAL_LABEL = "HF transformers generate, fp32, one request after another"
HF_BATCH_LABEL = "HF transformers generate, fp32, static batch"


def engine_settings(name: str) -> EngineSettings:
    """fp32 and bf16 are dense (ENGINE_WEIGHT_FORMAT=bf16: dense in ENGINE_DTYPE); int8 is the CPU default."""
    if name == "int8":
        return EngineSettings(_env_file=None, backend="native", dtype="float32", weight_format="int8")
    dtype = "bfloat16" if name == "bf16" else "float32"
    return EngineSettings(_env_file=None, backend="native", dtype=dtype, weight_format="bf16")


async def main_async(args: argparse.Namespace) -> dict[tuple[str, int], Row]:
    from transformers import AutoModelForCausalLM

    model_dir = ensure_bundled_model(quiet=True)
    n = args.concurrency
    names = ["fp32", "int8"] + (["bf16"] if args.bf16 else [])
    series: dict[tuple[str, int], list[list[Run]]] = {}
    clients = {name: await EngineClient.start(engine_settings(name), args.new_tokens) for name in names}
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompt_ids = clients["fp32"].core.tokenizer.encode_input(core_chat())
    try:
        await asyncio.to_thread(transformers_run, model, prompt_ids, 8, 1)
        for _ in range(args.repeats):
            for name, client in clients.items():
                series.setdefault((ENGINE_LABELS[name], 1), []).append(await client.run(1))
            series.setdefault((HF_LABEL, 1), []).append(
                await asyncio.to_thread(transformers_run, model, prompt_ids, args.new_tokens, 1)
            )
            for name, client in clients.items():
                series.setdefault((ENGINE_LABELS[name], n), []).append(await client.run(n))
            series.setdefault((HF_SEQUENTIAL_LABEL, n), []).append(
                await asyncio.to_thread(transformers_sequential, model, prompt_ids, args.new_tokens, n)
            )
            series.setdefault((HF_BATCH_LABEL, n), []).append(
                await asyncio.to_thread(transformers_run, model, prompt_ids, args.new_tokens, n)
            )
    finally:
        for client in clients.values():
            await client.close()
    if args.gateway:
        series[(f"Through the gateway ({args.gateway}, SSE)", 1)] = await asyncio.to_thread(
            bench_gateway, args.gateway, args.new_tokens, args.repeats
        )
    return {key: _row(key[0], key[1], runs) for key, runs in series.items()}


def core_chat():
    from quartet.services.engine.api.request import ChatInput, ChatMessage

    return ChatInput((ChatMessage("user", PROMPT),))


def main() -> None:
    import transformers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bf16", action="store_true", help="also measure the native engine with bfloat16 weights")
    parser.add_argument("--gateway", metavar="URL", help="also stream the request through a running gateway")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = asyncio.run(main_async(args))
    threads = torch.get_num_threads()
    print(f"date: {started}")
    print(
        f"machine: {machine()}; torch {torch.__version__}, {threads} threads, transformers {transformers.__version__}; "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"workload: chat prompt, {args.new_tokens} new tokens, greedy, ignore_eos; median of {args.repeats} runs\n")
    print(table(list(rows.values())))
    print()
    print("\n".join(targets(rows, args.concurrency)))


if __name__ == "__main__":
    main()
