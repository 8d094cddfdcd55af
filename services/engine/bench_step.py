"""Step benchmark: one eager mixed prefill step of the aggregate benchmark, at gpt-oss-20b shapes.

    python -m services.engine.bench_step [--out DIR] [--layers 24] [--seqs 8,16] [--prompt 1024]
                                         [--variants baseline,fused,expert] [--repeats 5]

``bench_gpu``'s 256-concurrent row prefills 256 random 1024-token prompts in steps of
``max_num_batched_tokens`` = 8192 tokens: eight whole prompts a step, run eagerly (no
graph). This times that step alone: the real ``NativeRunner.execute`` on sequences laid
out by the real block manager, the model built by ``bench_gpu.build_core`` (random MXFP4
weights, dense linears MXFP4), CUDA events around each step, median of ``--repeats``.

Beside each step time: a ``torch.profiler`` table of the top kernels of one step, the
step's FLOPs over 650 TFLOP/s and over torch's bf16 matmul measured in the same run
(8192 x 2880 x 5760, the peer), one MoE layer on 4 x 8192 pairs per dense path and per
in-register grouped tile, and the expert dequantization pass per tile shape (bytes moved
over the measured copy bandwidth is its floor). ``--seqs 16`` is the 16384-token budget.

Variants set the MoE's dense path (``kernels.mxfp4.moe.MOE_DENSE_PATH``): ``baseline``
the split gate/up GEMMs of the last engine run, ``fused`` one GEMM for gate and up,
``expert`` one expert at a time through a reused buffer. Same wheels and invocation as
``bench_gpu`` (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from kernels.mxfp4 import dequant, moe
from kernels.mxfp4.moe_grouped import GroupedConfig, grouped_config
from kernels.mxfp4.reference import route_torch
from services.engine.bench_gpu import build_core, copy_bandwidth, random_prompt
from services.engine.block_manager import BlockManager
from services.engine.models.gpt_oss import GptOssConfig
from services.engine.request import StoppingCriteria
from services.engine.scheduler import ScheduledSequence
from services.engine.sequence import new_sequences

PEAK_TFLOPS = 650.0  # the brief's round figure for dense bf16 on an H100 SXM
VARIANTS = {"baseline": "dense_cublas_split", "fused": "dense_cublas", "expert": "dense_cublas_expert"}
DEQUANT_TILES = (dequant.DequantTiles(32, 256, 4), dequant.DequantTiles(16, 512, 4), dequant.DequantTiles(64, 256, 8),
                 dequant.DequantTiles(32, 512, 8), dequant.DequantTiles(8, 1024, 4))  # fmt: skip


def cuda_ms(fn: Callable[[], object], repeats: int, warm: int = 2) -> float:
    """Median milliseconds of ``fn`` between CUDA events."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


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


def prefill_batch(runner, seqs: int, prompt: int, seed: int) -> list[ScheduledSequence]:
    """``seqs`` whole prompts as one step's chunks, KV blocks from the real block manager."""
    layout = runner.kv_layout
    blocks = BlockManager(layout.num_blocks, layout.block_size, enable_prefix_caching=False)
    batch = []
    for i in range(seqs):
        (seq,) = new_sequences(first_seq_id=i, n=1, prompt_ids=list(random_prompt(prompt, seed + i)), max_tokens=1,
                               stopping=StoppingCriteria(ignore_eos=True), eos_token_ids=[], decode=lambda ids: "")
        blocks.allocate(seq)
        batch.append(ScheduledSequence(seq, 0, prompt, needs_logits=True))
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


def moe_layer(layer, tokens: int, repeats: int) -> dict[str, float]:
    """One layer's experts on ``tokens`` tokens with random routing: ms per dense path and grouped tile."""
    w, c = layer.mlp.experts, layer.mlp
    x = torch.randn(tokens, w.hidden, device="cuda", dtype=torch.bfloat16)
    ids, wts = route_torch(torch.randn(tokens, w.num_experts, device="cuda"), c.top_k)
    pairs = ids.numel()
    paths: dict[str, dict] = {name: {"path": path} for name, path in VARIANTS.items()}
    paths["grouped (default tiles)"] = {"path": "grouped", "config": grouped_config(pairs, w.num_experts, w.layout)}
    paths["grouped 128 rows, 8 warps"] = {"path": "grouped", "config": GroupedConfig(
        block=128, decode="bf16x2", prefetch_scales=True, pair_rows=True, num_warps=8)}
    out = {}
    for name, kw in paths.items():
        try:
            out[name] = cuda_ms(lambda: moe.mxfp4_moe_triton(x, ids, wts, w, alpha=c.alpha, limit=c.limit, **kw),
                                repeats)
        except Exception as error:  # noqa: BLE001 - a candidate that fails to compile is reported, not fatal
            out[name] = float("nan")
            print(json.dumps({"moe_error": name, "error": f"{type(error).__name__}: {error}"[:300]}))
    return out


def dequant_sweep(layer, repeats: int) -> dict[str, float]:
    """ms to dequantize one layer's gate weights [E, I, H] per tile shape."""
    w = layer.mlp.experts.glu
    return {f"{t.rows}x{t.cols}, {t.num_warps} warps": cuda_ms(lambda t=t: dequant.dequantize_triton(w, tiles=t),
                                                              repeats) for t in DEQUANT_TILES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--seqs", default="8,16", help="prompts a step, comma-separated (8 = the 8192 budget)")
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=14, help="kernels in the profile table")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark times the GPU step")
    config = GptOssConfig(num_hidden_layers=args.layers)
    counts = [int(s) for s in args.seqs.split(",")]
    core, model = build_core(config, device="cuda", weight_format="mxfp4", cuda_graphs=False,
                             max_num_seqs=max(counts), kv_tokens=max(counts) * args.prompt + 1024)  # fmt: skip
    runner, report = core.runner, {"device": torch.cuda.get_device_name(), "layers": args.layers}
    report["matmul_tflops"] = matmul_tflops()
    report["copy_gbs"] = copy_bandwidth(torch.device("cuda")) / 1e9
    lines = [f"Device: {report['device']}; torch bf16 matmul 8192x2880x5760: {report['matmul_tflops']:.0f} TFLOP/s; "
             f"copy {report['copy_gbs']:.0f} GB/s", ""]  # fmt: skip
    lines += ["| step | variant | ms (median) | tok/s | floor @650 | floor @measured | step / floor@measured | "
              "logits vs first variant (rel. L2) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    profiles, best = {}, {}
    try:
        for seqs in counts:
            batch = prefill_batch(runner, seqs, args.prompt, seed=1000 * seqs)
            flops = step_flops(config, seqs, args.prompt)
            floor, floor_m = flops / PEAK_TFLOPS / 1e9, flops / report["matmul_tflops"] / 1e9
            first = None
            for name in args.variants.split(","):
                moe.MOE_DENSE_PATH = VARIANTS[name]
                logits = runner.execute(batch)
                first = logits if first is None else first
                rel = ((logits - first).norm() / first.norm()).item()
                ms = cuda_ms(lambda: runner.execute(batch), args.repeats)
                best[seqs] = min(best.get(seqs, (name, ms)), (name, ms), key=lambda b: b[1])
                lines.append(f"| {seqs} x {args.prompt} | {name} | {ms:.1f} | {seqs * args.prompt / ms * 1e3:.0f} | "
                             f"{floor:.1f} | {floor_m:.1f} | {ms / floor_m:.2f} | {rel:.1e} |")  # fmt: skip
                print(lines[-1], flush=True)
                if seqs == counts[0]:
                    profiles[name] = top_kernels(lambda: runner.execute(batch), args.top)
        layer = model.layers[0]
        moe_ms = moe_layer(layer, counts[0] * args.prompt, args.repeats)
        dq = dequant_sweep(layer, args.repeats)
        tiles = min(DEQUANT_TILES, key=lambda t: dq[f"{t.rows}x{t.cols}, {t.num_warps} warps"])
        if tiles != dequant.DEQUANT_TILES:  # the best step variant again with the fastest dequant tiles
            dequant.DEQUANT_TILES, (name, _) = tiles, best[counts[0]]
            moe.MOE_DENSE_PATH = VARIANTS[name]
            batch = prefill_batch(runner, counts[0], args.prompt, seed=1000 * counts[0])
            ms = cuda_ms(lambda: runner.execute(batch), args.repeats)
            lines.append(f"| {counts[0]} x {args.prompt} | {name} + dequant {tiles.rows}x{tiles.cols}/"
                         f"{tiles.num_warps}w | {ms:.1f} | {counts[0] * args.prompt / ms * 1e3:.0f} | | | | |")
    finally:
        asyncio.run(core.close())
    w = layer.mlp.experts.glu
    weights = w.shape[0] * w.shape[1] * w.shape[2]
    dq_floor = weights * (0.5 + 1 / 32 + 2) / report["copy_gbs"] / 1e6  # copy_gbs counts reads and writes
    lines += ["", f"One MoE layer, {counts[0] * args.prompt} tokens ({4 * counts[0] * args.prompt} pairs), "
              f"random routing: ms", "", "| path | ms |", "|---|---:|"]  # fmt: skip
    lines += [f"| {k} | {v:.3f} |" for k, v in moe_ms.items()]
    lines += ["", f"Dequantize one layer's gate experts ({weights / 1e6:.0f} M weights to bf16; floor "
              f"{dq_floor:.3f} ms at the copy bandwidth)", "", "| tiles | ms | GB/s moved |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.3f} | {weights * (0.5 + 1 / 32 + 2) / v / 1e6:.0f} |" for k, v in dq.items()]
    for name, (rows, gpu_ms) in profiles.items():
        lines += ["", f"Top kernels of one {counts[0]} x {args.prompt} step, {name} ({gpu_ms:.1f} ms of kernels)",
                  "", "| kernel | ms | calls | share |", "|---|---:|---:|---:|"]  # fmt: skip
        lines += [f"| `{r['kernel']}` | {r['ms']:.2f} | {r['calls']} | {r['ms'] / gpu_ms:.0%} |" for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_step.md").write_text(text + "\n")
        (args.out / "bench_step.json").write_text(json.dumps({**report, "moe_ms": moe_ms, "dequant_ms": dq,
                                                              "profiles": profiles}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
