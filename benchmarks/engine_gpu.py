"""GPU benchmark: the engine at gpt-oss-20b shapes on random MXFP4 weights, and transformers beside it.

    python -m benchmarks.engine_gpu [--out DIR] [--layers 24] [--weight-format mxfp4|bf16]
                                        [--no-cuda-graphs] [--skip-hf] [--smoke-only]

One command, one process. It first runs a smoke pass (2 layers, short runs) so a
broken build fails in seconds, then the full table:

* decode tok/s at batch 1 (128-token prompt, 256 new tokens);
* time to first token for 128- and 2048-token prompts (idle engine, median of 5);
* aggregate output tok/s at 64 and 256 concurrent requests (distinct random
  1024-token prompts, 256 new tokens each);
* Hugging Face transformers with random bf16 weights at batch 1, same prompt;
* the ceiling: bytes read per decode token / the card's measured copy bandwidth,
  for the issue's 3.7 GB and for what this model actually holds.

Requests go through ``EngineCore.generate``: the real scheduler, block manager,
paged KV cache, native runner, sampler and detokenizer, with the o200k_harmony
tokenizer; only the weights are random (generated on the GPU, no checkpoint).
Greedy with ``ignore_eos`` so every request makes exactly its token count.
Results stream to ``DIR/engine_gpu.jsonl`` as they come (a timeout keeps what
finished) and the tables to ``DIR/engine_gpu.md``.

On a GPU machine whose image has torch, triton and transformers but not the rest
of the engine's imports (the workplace's device image), bring wheels. Here, once:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
        annotated-types==0.8.0 typing-inspection==0.4.5 xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2 \
        openai-harmony==0.0.8 quicktok-v1==0.4.0

then there, carrying ``.whl`` and the generated ``quartet/engine``, ``quartet/memory``, ``quartet/router``:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3 -m benchmarks.engine_gpu --out $OUT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import statistics
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

import quartet.kernels.mxfp4.ops as kernels_ops
from quartet.services.engine.api.events import Chunk
from quartet.services.engine.models.gpt_oss import GptOssConfig, GptOssMoE
from quartet.services.engine.models.mxfp4_linear import MXFP4Linear
from quartet.services.engine.api.request import GenerateRequest, SamplingParams, StoppingCriteria, TokenInput
from benchmarks.step_profiler import StepProfiler
from quartet.services.engine.runner.step_timer import CompileLog, GcPauses, idle_between, slowest, summarize

ISSUE_BYTES_PER_TOKEN = 3.7e9  # experts MXFP4 + everything else bf16 (the issue's estimate)
TARGETS = {"decode_bs1": 500.0, "ttft_128": 0.030, "ttft_2048": 0.150, "aggregate_256": 8000.0}
PROMPT_ID_LIMIT = 199_998  # ordinary o200k tokens only (specials start at 199998)


@dataclass(frozen=True, slots=True)
class Workload:
    decode_prompt: int = 128
    decode_tokens: int = 256
    ttft_prompts: tuple[int, ...] = (128, 2048)
    ttft_repeats: int = 5
    concurrency: tuple[int, ...] = (64, 256)
    concurrent_prompt: int = 1024
    concurrent_tokens: int = 256


SMOKE = Workload(decode_tokens=32, ttft_prompts=(128,), ttft_repeats=2, concurrency=(8,), concurrent_prompt=128,
                 concurrent_tokens=16)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Run:
    ttft: float  # submit -> first token, seconds
    decode_tps: float  # tokens after the first / time after the first
    tokens: int
    end: float  # perf_counter at the last token


class Recorder:
    """Rows for the table, each also appended to a JSON-lines file at once."""

    def __init__(self, out: Path | None) -> None:
        self.rows: list[dict] = []
        self.path = out / "engine_gpu.jsonl" if out else None

    def add(self, **row: object) -> None:
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


def copy_bandwidth(device: torch.device, size: int = 1 << 30) -> float:
    """Device-to-device copy, bytes read plus written per second (median of 10)."""
    if device.type != "cuda":
        return float("nan")
    a = torch.empty(size, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    times = []
    for i in range(13):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        stop.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(stop) / 1e3)
    del a, b
    return 2 * size / statistics.median(times)


def ceilings(bandwidth: float, bytes_per_token: int) -> dict[str, float]:
    """Decode tok/s at batch 1 if every step only streamed its weights at ``bandwidth`` (bytes/s)."""
    return {"ceiling_tps_issue": bandwidth / ISSUE_BYTES_PER_TOKEN, "ceiling_tps_model": bandwidth / bytes_per_token}


def decode_bytes_per_token(model: torch.nn.Module) -> int:
    """Weight bytes a decode step at batch 1 reads: every linear whole, top-k of E experts, one embedding row."""
    total = 0
    for module in model.modules():
        if isinstance(module, MXFP4Linear):
            total += module.blocks.numel() + module.scales.numel()
        elif isinstance(module, GptOssMoE) and module.experts is not None:
            w = module.experts
            expert = sum(t.blocks.numel() + t.scales.numel() for t in (w.glu, w.linear, w.down)) // w.num_experts
            total += module.top_k * expert
        elif isinstance(module, torch.nn.Embedding):
            total += module.weight.shape[1] * module.weight.element_size()
            continue
        total += sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
    return total


def build_core(config: GptOssConfig, *, device: str, weight_format: str, cuda_graphs: bool, max_num_seqs: int,
               kv_tokens: int, warm_up_len: int = 0, max_num_batched_tokens: int = 0):  # fmt: skip
    """EngineCore over the native runner and a random-weight gpt-oss: everything real but the weights.

    ``warm_up_len``: capture the decode graphs for sequences up to this long before serving (as a server
    would at start-up), so capture time stays out of the measurements.
    """
    from quartet.services.engine.core import EngineCore
    from quartet.services.engine.text.harmony.tokenizer import HarmonyTokenizer
    from quartet.services.engine.runner.kv_cache import KVCache, KVCacheShape
    from quartet.services.engine.models.loader import load_model
    from quartet.services.engine.models.random_weights import RandomGptOssWeights, hf_config_dict
    from quartet.services.engine.runner.native import NativeRunner
    from quartet.services.engine.runner.base import RunnerInfo, RunnerOptions
    from quartet.services.engine.sched.scheduler import SchedulerConfig

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    weights = RandomGptOssWeights(config, device=device)
    model = load_model(hf_config_dict(config), weights, device=device, dtype=dtype, weight_format=weight_format)
    block_size = 16
    options = RunnerOptions(
        device=device, dtype="bfloat16" if dtype == torch.bfloat16 else "float32", max_num_seqs=max_num_seqs,
        block_size=block_size, num_kv_blocks=-(-kv_tokens // block_size), cuda_graphs=cuda_graphs,
    )  # fmt: skip
    cache = KVCache(KVCacheShape.of(model, block_size), options.num_kv_blocks, dtype=dtype, device=device)
    cache.bind(model)
    info = RunnerInfo(backend="native", architecture="gpt_oss", vocab_size=config.vocab_size,
                      context_length=min(config.max_position_embeddings, cache.num_tokens), device=device,
                      dtype=options.dtype)  # fmt: skip
    runner = NativeRunner(model, cache, info, options)
    if warm_up_len:
        started = time.perf_counter()
        graphs = runner.warm_up(warm_up_len)
        print(json.dumps({"decode_graphs_captured": graphs, "seconds": round(time.perf_counter() - started, 2)}))
    from quartet.services.engine.core import freeze_startup_heap

    freeze_startup_heap()  # as EngineCore.from_settings does after its warm-up
    budget = max_num_batched_tokens or (8192 if device == "cuda" else 512)  # the engine's defaults
    scheduler = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=budget, max_waiting=1024)
    return EngineCore(model_id="random/gpt-oss-20b-shapes", tokenizer=HarmonyTokenizer.load(None), runner=runner,
                      scheduler=scheduler, num_threads=torch.get_num_threads(),
                      async_scheduling=device == "cuda"), model  # fmt: skip


def random_prompt(length: int, seed: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, PROMPT_ID_LIMIT, (length,), generator=g).tolist())


async def stream(core, prompt: tuple[int, ...], new_tokens: int, started: float | None = None) -> Run:
    request = GenerateRequest(
        input=TokenInput(prompt),
        sampling=SamplingParams(temperature=0),
        stopping=StoppingCriteria(max_tokens=new_tokens, ignore_eos=True),
    )
    started = time.perf_counter() if started is None else started
    first = last = 0.0
    tokens = 0
    async for event in core.generate(request):
        if isinstance(event, Chunk) and event.token_ids:
            last = time.perf_counter()
            first = first or last
            tokens += len(event.token_ids)
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return Run(first - started, decode, tokens, last)


async def measure(core, work: Workload, record: Recorder, tag: str, deadline: float,
                  profile_steps: bool = False, compare_sync: bool = False,
                  aggregate_only: bool = False) -> None:  # fmt: skip
    """The engine's rows, most important first; what would start past ``deadline`` is recorded as skipped."""
    seed = iter(range(1_000_000))
    # Warm-up: every kernel path and shape class once (Triton compiles on first use).
    await stream(core, random_prompt(work.decode_prompt, next(seed)), 8)
    for n in work.ttft_prompts:
        await stream(core, random_prompt(n, next(seed)), 2)
    # The concurrent rows' shapes too (full-budget mixed prefill + decode steps), so no compile lands in them.
    await asyncio.gather(
        *(stream(core, random_prompt(work.concurrent_prompt, next(seed)), 3) for _ in range(max(work.concurrency)))
    )

    def late(metric: str) -> bool:
        if time.perf_counter() < deadline:
            return False
        record.add(stage=tag, metric=metric, skipped="past the --deadline-s budget")
        return True

    profiler = StepProfiler() if profile_steps else None
    if profiler:
        profiler.start()
    if not aggregate_only:
        run = await stream(core, random_prompt(work.decode_prompt, next(seed)), work.decode_tokens)
        record.add(stage=tag, metric="decode_bs1", tokens_per_second=run.decode_tps, ttft_s=run.ttft,
                   prompt=work.decode_prompt, new_tokens=run.tokens)  # fmt: skip
    if profiler:
        profiler.stop()
    for n in () if aggregate_only else work.ttft_prompts:
        if late(f"ttft_{n}"):
            continue
        ttfts = [(await stream(core, random_prompt(n, next(seed)), 1)).ttft for _ in range(work.ttft_repeats)]
        record.add(stage=tag, metric=f"ttft_{n}", seconds=statistics.median(ttfts), runs=ttfts)
    for n in work.concurrency:
        if late(f"aggregate_{n}"):
            continue
        timed = getattr(core.runner, "step_timings", False) is None and torch.cuda.is_available()
        if timed:  # every step's GPU time, to tell a GPU-bound row from a host-bound one
            core.runner.step_timings = []
        compiles = CompileLog() if timed else contextlib.nullcontext()
        pauses = GcPauses()
        started = time.perf_counter()
        with compiles, pauses:
            runs = await asyncio.gather(
                *(stream(core, random_prompt(work.concurrent_prompt, next(seed)), work.concurrent_tokens, started)
                  for _ in range(n))
            )  # fmt: skip
        wall = max(r.end for r in runs) - started
        if timed:
            timings, core.runner.step_timings = core.runner.step_timings, None
            steps = summarize(timings, min_decode_rows=n * 3 // 4)
            record.add(stage=tag, metric=f"steps_{n}", requests=n, slowest_eager=slowest(timings, "eager"),
                       compiled=len(compiles.names), compiled_kernels=sorted(set(compiles.names)), **steps,
                       **idle_between(timings), **pauses.summary())  # fmt: skip
        record.add(stage=tag, metric=f"aggregate_{n}", tokens_per_second=sum(r.tokens for r in runs) / wall,
                   wall_s=wall, median_ttft_s=statistics.median(r.ttft for r in runs),
                   median_decode_tps=statistics.median(r.decode_tps for r in runs), requests=n)  # fmt: skip
    if compare_sync and core.async_scheduling and not late("decode_bs1_sync"):
        core.async_scheduling = False  # the same engine and graphs, each step read before the next is scheduled
        try:
            run = await stream(core, random_prompt(work.decode_prompt, next(seed)), work.decode_tokens)
            record.add(stage=tag, metric="decode_bs1_sync", tokens_per_second=run.decode_tps, ttft_s=run.ttft,
                       prompt=work.decode_prompt, new_tokens=run.tokens)  # fmt: skip
        finally:
            core.async_scheduling = True


def hf_decode(config: GptOssConfig, work: Workload, device: str, record: Recorder, tag: str) -> None:
    """Transformers' GptOss with random bf16 weights (init on the GPU), greedy generate at batch 1."""
    from transformers import GptOssConfig as HFConfig
    from transformers import GptOssForCausalLM

    hf_config = HFConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_local_experts=config.num_local_experts,
        num_experts_per_tok=config.num_experts_per_tok, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim,
        sliding_window=config.sliding_window, eos_token_id=200002, pad_token_id=199999,
    )  # fmt: skip
    with torch.device(device):
        model = GptOssForCausalLM._from_config(hf_config, dtype=torch.bfloat16).eval()
    ids = torch.tensor([random_prompt(work.decode_prompt, 7)], device=device)
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=199999)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, **kwargs)  # warm-up
        _sync(device)
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
        _sync(device)
        ttft = time.perf_counter() - started
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=work.decode_tokens, min_new_tokens=work.decode_tokens, **kwargs)
        _sync(device)
        wall = time.perf_counter() - started
    record.add(stage=tag, metric="hf_decode_bs1", tokens_per_second=(work.decode_tokens - 1) / (wall - ttft),
               ttft_s=ttft, prompt=work.decode_prompt, new_tokens=work.decode_tokens)  # fmt: skip
    del model
    _free(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_pass(config: GptOssConfig, work: Workload, args: argparse.Namespace, record: Recorder, tag: str) -> None:
    """transformers first (its figure is the baseline, and the card is empty then), then the engine.

    A failure in one part is recorded with its traceback and the other part still runs.
    """
    if not args.skip_hf:
        _guarded(record, tag, "hf", lambda: hf_decode(config, work, args.device, record, tag))
        _free(args.device)
    _guarded(record, tag, "engine", lambda: _engine_pass(config, work, args, record, tag))
    _free(args.device)


def _engine_pass(config: GptOssConfig, work: Workload, args: argparse.Namespace, record: Recorder, tag: str) -> None:
    kv_tokens = max(work.concurrency) * (work.concurrent_prompt + work.concurrent_tokens + 16) + 4096
    started = time.perf_counter()
    core, model = build_core(
        config,
        device=args.device,
        weight_format=args.weight_format,
        cuda_graphs=args.cuda_graphs,
        max_num_seqs=max(work.concurrency),
        kv_tokens=kv_tokens,
        warm_up_len=max(work.concurrent_prompt + work.concurrent_tokens, work.decode_prompt + work.decode_tokens,
                        *work.ttft_prompts) if args.cuda_graphs else 0,
        max_num_batched_tokens=getattr(args, "max_num_batched_tokens", 0),
    )
    bandwidth = copy_bandwidth(torch.device(args.device))
    per_token = decode_bytes_per_token(model)
    record.add(stage=tag, metric="setup", layers=config.num_hidden_layers, weight_format=args.weight_format,
               decode_bytes_per_token=per_token, copy_bandwidth_bytes_per_s=bandwidth,
               **ceilings(bandwidth, per_token),
               device=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
               expert_layout=kernels_ops.EXPERT_LAYOUT,
               build_s=time.perf_counter() - started)  # fmt: skip
    del model
    try:
        asyncio.run(measure(core, work, record, tag, args.deadline,
                            getattr(args, "profile_steps", False) and tag == "full",
                            getattr(args, "compare_sync", False) and tag == "full",
                            getattr(args, "aggregate_only", False)))  # fmt: skip
    finally:
        asyncio.run(core.close())
        del core


def _guarded(record: Recorder, tag: str, part: str, body) -> None:
    try:
        body()
    except Exception as error:  # noqa: BLE001 - a benchmark reports what broke and goes on
        traceback.print_exc()
        record.add(stage=tag, metric=f"{part}_error", error=f"{type(error).__name__}: {error}"[:2000])


def table(rows: list[dict], tag: str) -> str:
    by = {r["metric"]: r for r in rows if r["stage"] == tag}
    setup = by.get("setup", {})
    lines = [f"Pass: {tag} ({setup.get('layers')} layers, dense linears {setup.get('weight_format')}, "
             f"experts {setup.get('expert_layout')}, {setup.get('device')})", "", "| Measure | Result | Target |",
             "|---|---:|---:|"]  # fmt: skip

    def row(name: str, key: str, fmt: str, target: str) -> None:
        if key in by:
            r = by[key]
            value = r.get("tokens_per_second", r.get("seconds"))
            if value is None:  # skipped past the deadline
                lines.append(f"| {name.split(' (')[0]} | skipped | {target} |")
            else:
                lines.append(f"| {name.format(**r)} | {fmt.format(value)} | {target} |")

    row("Decode, batch 1 ({prompt}-token prompt, {new_tokens} new)", "decode_bs1", "{:.0f} tok/s", ">= 500 tok/s")
    row("Decode, batch 1, asynchronous scheduling off (same engine)", "decode_bs1_sync", "{:.0f} tok/s", "")
    row(
        "HF transformers bf16 generate, batch 1, {prompt}-token prompt",
        "hf_decode_bs1",
        "{:.1f} tok/s",
        "(28.9 tok/s in the issue)",
    )
    for key in sorted(k for k in by if k.startswith("ttft_")):
        n = int(key.split("_")[1])
        target = {128: "<= 0.030 s", 2048: "<= 0.150 s"}.get(n, "")
        row(f"Time to first token, {n}-token prompt (median)", key, "{:.3f} s", target)
    for key in sorted((k for k in by if k.startswith("aggregate_")), key=lambda k: int(k.split("_")[1])):
        n = int(key.split("_")[1])
        row(
            f"Aggregate output, {n} concurrent ({{median_decode_tps:.0f}} tok/s each)",
            key,
            "{:.0f} tok/s",
            ">= 8,000 tok/s" if n == 256 else "",
        )
    for key in sorted((k for k in by if k.startswith("steps_")), key=lambda k: int(k.split("_")[1])):
        r, n = by[key], int(key.split("_")[1])
        if "decode_graph_gpu_ms_median" in r:
            lines.append(f"| {n} concurrent: decode step of >= {n * 3 // 4} rows, GPU time / launch-to-launch "
                         f"(median) | {r['decode_graph_gpu_ms_median']:.1f} / "
                         f"{r.get('decode_graph_wall_ms_median', float('nan')):.1f} ms | |")  # fmt: skip
        if r.get("compiled"):
            lines.append(f"| {n} concurrent: Triton compilations during the row | {r['compiled']} "
                         f"({', '.join(r['compiled_kernels'])[:120]}) | |")  # fmt: skip
        if "eager_steps" in r:
            lines.append(f"| {n} concurrent: eager (mixed prefill) steps, GPU time median / total "
                         f"| {r['eager_steps']:.0f} steps, {r['eager_gpu_ms_median']:.0f} ms / "
                         f"{r['eager_gpu_s_total']:.2f} s | |")  # fmt: skip
    for key in sorted(k for k in by if k.endswith("_error")):
        lines.append(f"| {key.removesuffix('_error')} failed | {by[key]['error'][:200]} | |")
    if setup:
        lines.append(f"| Ceiling: copy bandwidth / 3.7 GB per token | {setup['ceiling_tps_issue']:.0f} tok/s | |")
        gb, tps = setup["decode_bytes_per_token"] / 1e9, setup["ceiling_tps_model"]
        lines.append(f"| Ceiling: copy bandwidth / this model's {gb:.2f} GB per token | {tps:.0f} tok/s | |")
        lines.append(f"| Copy bandwidth (read + write) | {setup['copy_bandwidth_bytes_per_s'] / 1e12:.2f} TB/s | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for engine_gpu.jsonl and engine_gpu.md")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--weight-format", choices=("mxfp4", "bf16"), default="mxfp4")
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                        help="decode eagerly (default: through CUDA graphs captured before measuring)")
    parser.add_argument("--skip-hf", action="store_true", help="leave out the transformers baseline")
    parser.add_argument("--smoke-only", action="store_true")
    parser.add_argument("--profile-steps", action="store_true",
                        help="print a cProfile of the engine worker's steps during the batch-1 decode row "
                             "(which the profiler slows: do not record that row's figure)")
    parser.add_argument("--max-num-batched-tokens", type=int, default=0,
                        help="tokens a step may compute (ENGINE_MAX_NUM_BATCHED_TOKENS); 0: the engine's default")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="measure only the concurrent rows (e.g. to compare a --max-num-batched-tokens)")
    parser.add_argument("--compare-sync", action="store_true",
                        help="also measure batch-1 decode with asynchronous scheduling off, last")
    parser.add_argument(
        "--deadline-s", type=float, default=0, help="skip measurements that would start later (0: none)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--expert-layout", choices=("fma8t", "fma8"), default=None,
                        help="the MoE experts' code layout (default: kernels' EXPERT_LAYOUT), to compare")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes (hidden 256, vocab 200k kept): plumbing checks"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: this benchmark measures the GPU path (use --device cpu --tiny to check plumbing)"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    args.deadline = time.perf_counter() + args.deadline_s if args.deadline_s else float("inf")
    if args.expert_layout:
        kernels_ops.EXPERT_LAYOUT = args.expert_layout  # read when the engine loads the experts
    record = Recorder(args.out)
    full = GptOssConfig(num_hidden_layers=args.layers)
    if args.tiny:
        full = dataclasses.replace(full, hidden_size=256, intermediate_size=256, num_attention_heads=8,
                                   num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
                                   layer_types=())  # fmt: skip
    smoke = dataclasses.replace(full, num_hidden_layers=2, layer_types=())
    run_pass(smoke, SMOKE, args, record, "smoke")
    tags = ["smoke"]
    if not args.smoke_only:
        run_pass(full, Workload(), args, record, "full")
        tags.append("full")
    text = "\n\n".join(table(record.rows, tag) for tag in tags)
    print(text)
    if args.out:
        (args.out / "engine_gpu.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
