"""GPU check and microbenchmark: the Triton paged attention against the engine's torch path, gpt-oss-20b shapes.

``python -m benchmarks.attention [--out DIR]`` on a CUDA machine. Both sides run through the
engine's ``Attention`` layer (KV write included) on the same pool, metadata and inputs:
64 query heads, 8 KV heads, head_dim 64, bf16 KV in 16-token blocks on shuffled blocks, sinks on.
Decode at B = 1, 64, 256 with 1152 cached tokens each; prefill of one 128- or 2048-token prompt.
Full and window-128 layers. Timing: CUDA events, warm-up, median of ``--reps``. ``graph/layer``
is the Triton decode captured 24 times (a model's layers) in one CUDA graph, replayed, divided by 24.
GB/s counts the K/V bytes the attention must read (each visible token's K and V once) against the
measured device-to-device copy bandwidth (1 GiB copied: 2 GiB of traffic).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from quartet.services.engine.layers.attention import Attention, AttentionMetadata

HEADS, KV_HEADS, DIM, BLOCK, WINDOW, LAYERS = 64, 8, 64, 16, 128, 24
BYTES_PER_TOKEN = 2 * KV_HEADS * DIM * 2  # K and V, bf16


def time_ms(fn: Callable[[], object], reps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(reps: int) -> float:
    """Bytes per second of a 1 GiB device-to-device copy, counting the read and the write."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), reps)
    del src, dst
    return 2 * (1 << 30) / (ms * 1e-3)


def layer_pair(window: int | None, num_blocks: int) -> tuple[Attention, Attention]:
    k = torch.randn(num_blocks, BLOCK, KV_HEADS, DIM, device="cuda").to(torch.bfloat16)
    v = torch.randn_like(k)
    pair = []
    for backend in ("torch", "triton"):
        attn = Attention(HEADS, KV_HEADS, DIM, DIM**-0.5, window, backend=backend)
        attn.k_cache, attn.v_cache = k, v
        pair.append(attn)
    return pair[0], pair[1]


def shuffled_tables(lengths: list[int], num_blocks: int, gen: torch.Generator) -> list[list[int]]:
    order = torch.randperm(num_blocks, generator=gen).tolist()
    tables, used = [], 0
    for n in lengths:
        count = -(-n // BLOCK)
        tables.append(order[used : used + count])
        used += count
    return tables


def decode_case(batch: int, context: int, window: int | None, reps: int, gen: torch.Generator) -> dict:
    num_blocks = batch * -(-context // BLOCK) + 1
    ref, tri = layer_pair(window, num_blocks)
    tables = shuffled_tables([context] * batch, num_blocks, gen)
    meta = AttentionMetadata.build(query_lens=[1] * batch, seq_lens=[context] * batch, block_tables=tables,
                                   block_size=BLOCK, device="cuda")
    q = torch.randn(batch, HEADS, DIM, device="cuda").to(torch.bfloat16)
    k = torch.randn(batch, KV_HEADS, DIM, device="cuda").to(torch.bfloat16)
    v = torch.randn_like(k)
    sinks = torch.randn(HEADS, device="cuda")
    want, got = ref(q, k, v, meta, sinks), tri(q, k, v, meta, sinks)
    row = {
        "case": f"decode B={batch} ctx={context} {'win' + str(window) if window else 'full'}",
        "torch_ms": time_ms(lambda: ref(q, k, v, meta, sinks), reps),
        "triton_ms": time_ms(lambda: tri(q, k, v, meta, sinks), reps),
        "max_err": (got.float() - want.float()).abs().max().item(),
        "kv_bytes": batch * min(context, window or context) * BYTES_PER_TOKEN,
    }
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(LAYERS):
            tri(q, k, v, meta, sinks)
    row["graph_ms"] = time_ms(graph.replay, reps) / LAYERS
    return row


def prefill_case(length: int, window: int | None, reps: int, gen: torch.Generator) -> dict:
    num_blocks = -(-length // BLOCK) + 1
    ref, tri = layer_pair(window, num_blocks)
    tables = shuffled_tables([length], num_blocks, gen)
    meta = AttentionMetadata.build(query_lens=[length], seq_lens=[length], block_tables=tables, block_size=BLOCK,
                                   device="cuda")
    q = torch.randn(length, HEADS, DIM, device="cuda").to(torch.bfloat16)
    k = torch.randn(length, KV_HEADS, DIM, device="cuda").to(torch.bfloat16)
    v = torch.randn_like(k)
    sinks = torch.randn(HEADS, device="cuda")
    want, got = ref(q, k, v, meta, sinks), tri(q, k, v, meta, sinks)
    pairs = sum(min(p + 1, window or p + 1) for p in range(length))  # visible (query, key) pairs
    return {
        "case": f"prefill {length} {'win' + str(window) if window else 'full'}",
        "torch_ms": time_ms(lambda: ref(q, k, v, meta, sinks), reps),
        "triton_ms": time_ms(lambda: tri(q, k, v, meta, sinks), reps),
        "max_err": (got.float() - want.float()).abs().max().item(),
        "kv_bytes": length * BYTES_PER_TOKEN,
        "flops": 4 * HEADS * DIM * pairs,
    }


def render(rows: list[dict], bandwidth: float) -> str:
    head = ("| case | torch ms | triton ms | speedup | triton graph/layer ms | KV MB | GB/s (best) | % copy BW "
            "| TFLOP/s | max err |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        best = min(r["triton_ms"], r.get("graph_ms", r["triton_ms"]))
        gbs = r["kv_bytes"] / (best * 1e-3) / 1e9
        tflops = f"{r['flops'] / (r['triton_ms'] * 1e-3) / 1e12:.1f}" if "flops" in r else ""
        graph = f"{r['graph_ms']:.4f}" if "graph_ms" in r else ""
        lines.append(
            f"| {r['case']} | {r['torch_ms']:.4f} | {r['triton_ms']:.4f} | {r['torch_ms'] / r['triton_ms']:.1f}x "
            f"| {graph} | {r['kv_bytes'] / 1e6:.2f} | {gbs:.0f} | {100 * gbs * 1e9 / bandwidth:.0f} % | {tflops} "
            f"| {r['max_err']:.2e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--context", type=int, default=1152)
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and table.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.attention needs a CUDA device")
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    bandwidth = copy_bandwidth(args.reps)
    rows = []
    for window in (None, WINDOW):
        for batch in (1, 64, 256):
            rows.append(decode_case(batch, args.context, window, args.reps, gen))
            torch.cuda.empty_cache()
    for window in (None, WINDOW):
        for length in (128, 2048):
            rows.append(prefill_case(length, window, args.reps, gen))
            torch.cuda.empty_cache()
    table = render(rows, bandwidth)
    print(f"device: {torch.cuda.get_device_name()}, copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "attention_bench.json").write_text(json.dumps({"copy_bytes_per_s": bandwidth, "rows": rows}))
        (args.out / "attention_bench.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
