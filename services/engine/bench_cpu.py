"""CPU benchmark: our engine against Hugging Face ``generate`` on the bundled model.

    python -m services.engine.bench_cpu [--new-tokens 128] [--repeats 3] [--gateway http://127.0.0.1:8000]

Every row streams the same chat prompt, greedy, ``ignore_eos`` (so every run
produces exactly ``--new-tokens`` tokens) and reports the median over
``--repeats`` runs. Our engine is measured through its real gRPC server (a
port-0 server in this process, the client on another event loop), so the
figures include serialization and streaming. ``--gateway URL`` adds the same
request streamed through ``POST /v1/chat/completions`` of a running gateway.
Prints a markdown table, ready for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import services.engine  # noqa: F401 - sets the OpenMP wait policy before torch loads

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

from services.common.grpc_server import CHANNEL_OPTIONS
from services.engine.core import EngineCore
from services.engine.model_cache import BUNDLED_MODEL_ID, ensure_bundled_model
from services.engine.server import create_server
from services.engine.settings import EngineSettings

PROMPT = "Write a long story about a dragon who learns to bake bread."


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
    """Streams the benchmark request from the engine's gRPC server."""

    def __init__(self, address: str, new_tokens: int) -> None:
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = engine_pb2_grpc.EngineServiceStub(self.channel)
        self.new_tokens = new_tokens

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

    async def warm_up(self) -> None:
        await self._stream(8, time.perf_counter())

    async def run(self, concurrency: int) -> list[Run]:
        started = time.perf_counter()
        return list(await asyncio.gather(*(self._stream(self.new_tokens, started) for _ in range(concurrency))))


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
            f"| {r.path} | {r.concurrency} | {r.ttft_seconds:.3f} | {r.decode_tokens_per_second:.1f} | {r.aggregate_tokens_per_second:.1f} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Row]:
    """Engine and transformers runs interleave, repeat by repeat, so both see the same machine load."""
    from transformers import AutoModelForCausalLM

    model_dir = ensure_bundled_model(quiet=True)
    n = args.concurrency
    hf_label = f"HF transformers {transformers_version()} generate, fp32"
    series: dict[tuple[str, int], list[list[Run]]] = {}
    core = await asyncio.to_thread(
        EngineCore.from_settings, EngineSettings(_env_file=None, backend="native", dtype="float32")
    )
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompt_ids = core.tokenizer.encode_input(core_chat())
    built = create_server("127.0.0.1:0", core)
    await built.start()
    client = EngineClient(f"127.0.0.1:{built.port}", args.new_tokens)
    try:
        await client.warm_up()
        await asyncio.to_thread(transformers_run, model, prompt_ids, 8, 1)
        for _ in range(args.repeats):
            series.setdefault((ENGINE_LABEL, 1), []).append(await client.run(1))
            series.setdefault((hf_label, 1), []).append(
                await asyncio.to_thread(transformers_run, model, prompt_ids, args.new_tokens, 1)
            )
            series.setdefault((ENGINE_LABEL, n), []).append(await client.run(n))
            series.setdefault((f"{hf_label} (static batch)", n), []).append(
                await asyncio.to_thread(transformers_run, model, prompt_ids, args.new_tokens, n)
            )
    finally:
        await client.channel.close()
        await built.stop(None)
        await core.close()
    del model
    if args.bf16:
        core = await asyncio.to_thread(
            EngineCore.from_settings, EngineSettings(_env_file=None, backend="native", dtype="bfloat16")
        )
        built = create_server("127.0.0.1:0", core)
        await built.start()
        client = EngineClient(f"127.0.0.1:{built.port}", args.new_tokens)
        try:
            await client.warm_up()
            for _ in range(args.repeats):
                series.setdefault((BF16_LABEL, 1), []).append(await client.run(1))
                series.setdefault((BF16_LABEL, n), []).append(await client.run(n))
        finally:
            await client.channel.close()
            await built.stop(None)
            await core.close()
    if args.gateway:
        series[(f"Through the gateway ({args.gateway}, SSE)", 1)] = await asyncio.to_thread(
            bench_gateway, args.gateway, args.new_tokens, args.repeats
        )
    return [_row(label, concurrency, runs) for (label, concurrency), runs in series.items()]


ENGINE_LABEL = "Quartet engine, native fp32 (gRPC stream)"
BF16_LABEL = "Quartet engine, native bf16 (ENGINE_DTYPE=bfloat16)"


def core_chat():
    from services.engine.request import ChatInput, ChatMessage

    return ChatInput((ChatMessage("user", PROMPT),))


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--bf16", action="store_true", help="also measure the native engine with bfloat16 weights")
    parser.add_argument("--gateway", metavar="URL", help="also stream the request through a running gateway")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    threads = torch.get_num_threads()
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {machine()}; torch {torch.__version__}, {threads} threads; load average {os.getloadavg()[0]:.2f}")
    print(f"workload: chat prompt, {args.new_tokens} new tokens, greedy, ignore_eos; median of {args.repeats} runs\n")
    print(table(rows))


if __name__ == "__main__":
    main()
