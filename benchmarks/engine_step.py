"""Step benchmark: one eager mixed prefill step of the aggregate benchmark, at gpt-oss-20b shapes.

    python -m benchmarks.engine_step [--out DIR] [--layers 24] [--seqs 8,16] [--prompt 1024] [--repeats 5]

``engine_gpu``'s 256-concurrent row prefills 256 random 1024-token prompts in steps of
``max_num_batched_tokens`` = 8192 tokens: eight whole prompts a step, run eagerly (no
graph). This times that step alone: the real ``NativeRunner.execute`` on sequences laid
out by the real block manager, the model built by ``engine_gpu.build_core`` (random MXFP4
weights, dense linears MXFP4), CUDA events around each step, median of ``--repeats``,
the variants timed in turns (the card's clock drifts under sustained load).

Beside each step time: a ``torch.profiler`` table of the top kernels of one step, the
step's FLOPs over 650 TFLOP/s and over torch's bf16 matmul measured in the same run
(8192 x 2880 x 5760, the peer), one MoE layer on 4 x 8192 pairs per dense path and per
in-register grouped tile, and the expert dequantization pass per tile shape (bytes moved
over the measured copy bandwidth is its floor). ``--seqs 16`` is the 16384-token budget.

Variants set the MoE path of long steps (``quartet.kernels.mxfp4.moe.MOE_DENSE_PATH`` and the
dequantization tiles): ``baseline`` the split gate/up GEMMs of the last engine run,
``fused`` one GEMM for gate and up, the same with the fastest dequantization tiles of the
sweep, and ``grouped`` the in-register tiles (no bf16 copy) that were fastest on one layer.
Same wheels and invocation as ``engine_gpu`` (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from quartet.kernels.mxfp4 import dequant, moe
from quartet.kernels.mxfp4.moe_grouped import GroupedConfig, grouped_config
from quartet.kernels.mxfp4.reference import route_torch
from benchmarks.engine_gpu import build_core, copy_bandwidth, random_prompt
from quartet.services.engine.sched.block_manager import BlockManager
from quartet.services.engine.models.gpt_oss import GptOssConfig
from quartet.services.engine.api.request import StoppingCriteria
from quartet.services.engine.sched.scheduler import ScheduledSequence
from quartet.services.engine.sched.sequence import new_sequences

PEAK_TFLOPS = 650.0  # the brief's round figure for dense bf16 on an H100 SXM
_PAIRED = dict(decode="bf16x2", prefetch_scales=True, pair_rows=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    """The MoE settings one step runs with (``quartet.kernels.mxfp4.moe`` / ``dequant`` module settings)."""

    path: str
    tiles: dequant.DequantTiles

    def apply(self) -> None:
        moe.MOE_DENSE_PATH, dequant.DEQUANT_TILES = self.path, self.tiles


EARLIER_TILES = dequant.DequantTiles(32, 256, 4)  # the dequantization's tiles before this benchmark
VARIANTS = {"baseline": Variant("dense_cublas_split", EARLIER_TILES), "fused": Variant("dense_cublas", EARLIER_TILES),
            "fused, default tiles": Variant("dense_cublas", dequant.DequantTiles())}  # fmt: skip
DEQUANT_TILES = (EARLIER_TILES, *(dequant.DequantTiles(*t) for t in ((4, 2048, 4), (2, 2048, 2), (8, 1024, 4),
                                                                       (8, 2048, 8), (16, 1024, 8))))  # fmt: skip
# In-register candidates for 4 x 8192 pairs (about 1024 rows an expert); the first H100 runs also
# had 256 rows at bn 32 (5.70 ms) and 128 rows at bn 128 (5.89 ms) against 5.39 for the second here.
GROUPED_TILES = {
    "128 rows, 8 warps": GroupedConfig(block=128, num_warps=8, **_PAIRED),
    "128 rows, 8 warps, W left": GroupedConfig(block=128, num_warps=8, w_left=True, bn_down=128, **_PAIRED),
}


def cuda_ms(fn: Callable[[], object], repeats: int, warm: int = 2) -> float:
    """Median milliseconds of ``fn`` between CUDA events."""
    return interleaved({"": fn}, repeats, warm)[""]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warm: int = 1) -> dict[str, float]:
    """Median ms of each ``fn``, timed in turns (a, b, c, a, b, c, ...) so that the card's clock
    drifting under sustained load (seen between rows of the first run) weighs on all alike."""
    for fn in fns.values():
        for _ in range(warm):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            torch.cuda.synchronize()
            times[name].append(start.elapsed_time(stop))
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_tflops(m: int = 8192, k: int = 2880, n: int = 5760) -> float:
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    return 2 * m * n * k / cuda_ms(lambda: torch.nn.functional.linear(a, b), 20, warm=5) / 1e9


def step_flops(c: GptOssConfig, seqs: int, prompt: int) -> float:
    """Matmul FLOPs of one prefill step: projections, router, experts, attention, logits of the last rows."""
    t, h, hd = seqs * prompt, c.hidden_size, c.head_dim
    q, kv = c.num_attention_heads * hd, c.num_key_value_heads * hd
    dense = 2 * t * h * (q + 2 * kv) + 2 * t * q * h + 2 * t * h * c.num_local_experts
    experts = 2 * t * c.num_experts_per_tok * 3 * c.intermediate_size * h
    total = 0.0
    for kind in c.layer_types:  # QK^T and PV over each query's visible keys
        window = c.sliding_window if kind == "sliding_attention" else prompt
        visible = sum(min(i + 1, window) for i in range(prompt))
        total += dense + experts + 4 * c.num_attention_heads * hd * visible * seqs
    return total + 2 * seqs * h * c.vocab_size


def eager_core(layers: int, max_num_seqs: int, kv_tokens: int):
    """(core, model) of ``engine_gpu.build_core`` at gpt-oss-20b shapes with ``layers`` layers, no CUDA
    graphs (the step benchmarks run steps eagerly so the profiler sees every kernel); exits without CUDA."""
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark times the GPU step")
    return build_core(GptOssConfig(num_hidden_layers=layers), device="cuda", weight_format="mxfp4", cuda_graphs=False,
                      max_num_seqs=max_num_seqs, kv_tokens=kv_tokens)


def prefill_batch(runner, seqs: int, prompt: int, seed: int, *, start: int = 0) -> list[ScheduledSequence]:
    """``seqs`` random prompts of ``prompt`` tokens, each computing tokens ``[start, prompt)`` in one step
    (0: whole prompts as one step's chunks; ``prompt - 1``: a decode step), KV blocks from the real
    block manager."""
    layout = runner.kv_layout
    blocks = BlockManager(layout.num_blocks, layout.block_size, enable_prefix_caching=False)
    batch = []
    for i in range(seqs):
        (seq,) = new_sequences(first_seq_id=i, n=1, prompt_ids=list(random_prompt(prompt, seed + i)), max_tokens=1,
                               stopping=StoppingCriteria(ignore_eos=True), eos_token_ids=[], decode=lambda ids: "")
        blocks.allocate(seq)
        batch.append(ScheduledSequence(seq, start, prompt - start, needs_logits=True))
    return batch


def top_kernels(fn: Callable[[], object], top: int) -> tuple[list[dict], float]:
    """(the ``top`` kernels of one call of ``fn`` by GPU time, the GPU time of all its kernels in ms)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if us > 0 and str(getattr(e, "device_type", "CUDA")).endswith("CUDA"):
            rows.append({"kernel": e.key[:90], "ms": us / 1e3, "calls": e.count})
    rows.sort(key=lambda r: -r["ms"])
    return rows[:top], sum(r["ms"] for r in rows)


def idle_gaps(fn: Callable[[], object], top: int = 12, min_us: float = 20.0) -> dict:
    """Where the GPU waits inside one call of ``fn``: the device's idle time between its first and
    last kernel, and the longest gaps, each with the kernel after it and the CPU-side ops that were
    running meanwhile (a host sync shows as ``cudaStreamSynchronize``/``cudaMemcpy*``/``aten::item``,
    plain launch overhead as the Python ops of the layer being launched)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = list(prof.events())
    dev = sorted((e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")),
                 key=lambda e: e.time_range.start)
    cpu = [e for e in events if not str(getattr(e, "device_type", "")).endswith("CUDA")]
    if not dev:
        return {"kernels": 0}
    busy, gaps, end = 0.0, [], dev[0].time_range.start
    for e in dev:
        start, stop = e.time_range.start, e.time_range.end
        if start > end:
            gaps.append((start - end, end, start, e.name))
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    span = end - dev[0].time_range.start
    rows = []
    for gap, a, b, after in sorted(gaps, reverse=True)[:top]:
        if gap < min_us:
            break
        during = sorted(((min(b, c.time_range.end) - max(a, c.time_range.start), c.name) for c in cpu
                         if c.time_range.start < b and c.time_range.end > a), reverse=True)
        names = []
        for _, name in during:  # the longest overlapping ops, outermost first, without repeats
            if name not in names:
                names.append(name)
        rows.append({"gap_us": round(gap, 1), "next_kernel": after[:70], "cpu_ops": names[:8]})
    return {"span_ms": span / 1e3, "busy_ms": busy / 1e3, "idle_ms": (span - busy) / 1e3,
            "gaps_over_min": sum(1 for g in gaps if g[0] >= min_us),
            "idle_in_gaps_over_min_ms": sum(g[0] for g in gaps if g[0] >= min_us) / 1e3, "longest": rows}


def moe_layer(layer, tokens: int, repeats: int) -> dict[str, float]:
    """One layer's experts on ``tokens`` tokens with random routing: ms per dense path and grouped tile."""
    w, c = layer.mlp.experts, layer.mlp
    x = torch.randn(tokens, w.hidden, device="cuda", dtype=torch.bfloat16)
    ids, wts = route_torch(torch.randn(tokens, w.num_experts, device="cuda"), c.top_k)
    paths = {"baseline (split)": {"path": "dense_cublas_split"}, "fused": {"path": "dense_cublas"},
             "grouped, default tiles": {"path": "grouped", "config": grouped_config(ids.numel(), w.num_experts)}}
    paths.update({f"grouped, {name}": {"path": "grouped", "config": cfg} for name, cfg in GROUPED_TILES.items()})
    fns, rel, first = {}, {}, None
    for name, kw in paths.items():
        fn = lambda kw=kw: moe.mxfp4_moe_triton(x, ids, wts, w, alpha=c.alpha, limit=c.limit, **kw)  # noqa: E731
        try:
            y = fn().float()  # compiles; a candidate that fails is reported, not fatal
        except Exception as error:  # noqa: BLE001
            print(json.dumps({"moe_error": name, "error": f"{type(error).__name__}: {error}"[:300]}))
            continue
        first = y if first is None else first
        rel[name], fns[name] = ((y - first).norm() / first.norm()).item(), fn
    return {name: (ms, rel[name]) for name, ms in interleaved(fns, repeats).items()}


def dequant_sweep(layer, repeats: int) -> dict[dequant.DequantTiles, float]:
    """ms to dequantize one layer's gate weights [E, I, H] per tile shape."""
    w = layer.mlp.experts.glu
    return interleaved({t: lambda t=t: dequant.dequantize_triton(w, tiles=t) for t in DEQUANT_TILES}, repeats)


def _name(t: dequant.DequantTiles) -> str:
    return f"{t.rows}x{t.cols}, {t.num_warps} warps"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--seqs", default="8,16", help="prompts a step, comma-separated (8 = the 8192 budget)")
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=14, help="kernels in the profile table")
    parser.add_argument("--gaps", action="store_true", help="only the GPU's idle gaps inside one step, then exit")
    args = parser.parse_args()
    counts = [int(s) for s in args.seqs.split(",")]
    core, model = eager_core(args.layers, max(counts), max(counts) * args.prompt + 1024)
    config = GptOssConfig(num_hidden_layers=args.layers)  # what eager_core built
    runner, layer = core.runner, model.layers[0]
    if args.gaps:
        try:
            batch = prefill_batch(runner, counts[0], args.prompt, seed=1000 * counts[0])
            for _ in range(2):
                runner.execute(batch)
            print(json.dumps({"step": f"{counts[0]} x {args.prompt}", **idle_gaps(lambda: runner.execute(batch))},
                             indent=1))
        finally:
            asyncio.run(core.close())
        return 0
    report = {"device": torch.cuda.get_device_name(), "layers": args.layers, "matmul_tflops": matmul_tflops(),
              "copy_gbs": copy_bandwidth(torch.device("cuda")) / 1e9}  # fmt: skip
    try:
        dq = dequant_sweep(layer, args.repeats)
        moe_ms = moe_layer(layer, counts[0] * args.prompt, args.repeats)
        variants = dict(VARIANTS)
        fastest = min(dq, key=dq.get)
        if fastest not in (v.tiles for v in variants.values()):
            variants[f"fused, dequant {_name(fastest)}"] = Variant("dense_cublas", fastest)
        steps, profiles = step_table(runner, config, counts, args, variants, report)
    finally:
        asyncio.run(core.close())
    text = "\n".join(render(report, steps, moe_ms, dq, profiles, layer, counts[0] * args.prompt, variants))
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "engine_step.md").write_text(text + "\n")
        (args.out / "engine_step.json").write_text(json.dumps({**report, "steps": steps, "moe_ms": moe_ms,
            "dequant_ms": {_name(t): v for t, v in dq.items()}, "profiles": profiles}, indent=1))  # fmt: skip
    return 0


def step_table(runner, config: GptOssConfig, counts: list[int], args: argparse.Namespace,
               variants: dict[str, Variant], report: dict) -> tuple[list[dict], dict]:  # fmt: skip
    """Each step size with every variant, timed in turns; rel. L2 of the logits against the first variant."""
    rows, profiles = [], {}
    for seqs in counts:
        batch = prefill_batch(runner, seqs, args.prompt, seed=1000 * seqs)
        flops = step_flops(config, seqs, args.prompt)
        fns, rel, first = {}, {}, None
        for name, v in variants.items():
            v.apply()
            logits = runner.execute(batch)  # also compiles what this variant runs
            first = logits if first is None else first
            rel[name] = ((logits - first).norm() / first.norm()).item()
            fns[name] = lambda v=v: (v.apply(), runner.execute(batch))
            if seqs == counts[0]:
                profiles[name] = top_kernels(lambda: runner.execute(batch), args.top)
        for name, ms in interleaved(fns, args.repeats).items():
            rows.append({"seqs": seqs, "prompt": args.prompt, "variant": name, "ms": ms, "rel_l2": rel[name],
                         "tokens_per_s": seqs * args.prompt / ms * 1e3, "floor_650_ms": flops / PEAK_TFLOPS / 1e9,
                         "floor_measured_ms": flops / report["matmul_tflops"] / 1e9})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    VARIANTS["fused, default tiles"].apply()
    return rows, profiles


def render(report: dict, steps: list[dict], moe_ms: dict, dq: dict, profiles: dict, layer, tokens: int,
           variants: dict[str, Variant]) -> list[str]:  # fmt: skip
    lines = [f"Device: {report['device']}; torch bf16 matmul 8192x2880x5760: {report['matmul_tflops']:.0f} TFLOP/s; "
             f"copy {report['copy_gbs']:.0f} GB/s", "",
             "| step | variant | ms (median) | tok/s | floor @650 | floor @measured | step / floor@measured | "
             "logits vs baseline (rel. L2) |", "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['seqs']} x {r['prompt']} | {r['variant']} | {r['ms']:.1f} | {r['tokens_per_s']:.0f} | "
              f"{r['floor_650_ms']:.1f} | {r['floor_measured_ms']:.1f} | {r['ms'] / r['floor_measured_ms']:.2f} | "
              f"{r['rel_l2']:.1e} |" for r in steps]  # fmt: skip
    lines += ["", f"One MoE layer, {tokens} tokens ({4 * tokens} pairs), random routing, timed in turns (default "
              "dequantization tiles)", "", "| path | ms | output vs baseline (rel. L2) |", "|---|---:|---:|"]
    lines += [f"| {k} | {ms:.3f} | {rel:.1e} |" for k, (ms, rel) in moe_ms.items()]
    w = layer.mlp.experts.glu
    weights = w.shape[0] * w.shape[1] * w.shape[2]
    moved = weights * (0.5 + 1 / 32 + 2)  # codes and scales in, bf16 out
    lines += ["", f"Dequantize one layer's gate experts ({weights / 1e6:.0f} M weights to bf16; floor "
              f"{moved / report['copy_gbs'] / 1e6:.3f} ms at the copy bandwidth, which counts reads and writes)", "",
              "| tiles | ms | GB/s moved |", "|---|---:|---:|"]  # fmt: skip
    lines += [f"| {_name(t)} | {v:.3f} | {moved / v / 1e6:.0f} |" for t, v in dq.items()]
    for name, (rows, gpu_ms) in profiles.items():
        lines += ["", f"Top kernels of one {steps[0]['seqs']} x {steps[0]['prompt']} step, {name} "
                  f"({gpu_ms:.1f} ms of kernels)", "", "| kernel | ms | calls | share |", "|---|---:|---:|---:|"]
        lines += [f"| `{r['kernel']}` | {r['ms']:.2f} | {r['calls']} | {r['ms'] / gpu_ms:.0%} |" for r in rows]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
