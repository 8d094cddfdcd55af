"""gpt-oss on CUDA as the engine serves it, against the CPU fp32 model on a tiny random checkpoint.

The CUDA path is a different program from the CPU one: the fused norm / RoPE /
router kernels, the Triton MoE and paged-attention kernels, MXFP4 dense linears
(the checkpoint's dense weights sit on the MXFP4 grid, so quantizing them at load
is lossless), and decode and prefill replayed from CUDA graphs. These tests need a
GPU and are skipped without one; ``tests/engine/test_engine_gpt_oss_oracle.py``
ties the CPU model to transformers.

Tolerances, as measured on an H100 (2026-11-26):

* in fp32 the CUDA program matches the CPU model to 2e-4 on logits that span about
  +-3, so a strict bound there checks every kernel's arithmetic -- for prompts of up to
  16 tokens (32 token-expert pairs), which take the CUDA-core MoE kernels; the
  tensor-core MoE path past that multiplies bf16 operands by design, fp32 model or not;
* in bf16 (how it serves) most positions are within 0.05, but a few move by 0.4 to
  2.3: a token whose router logits nearly tie picks another expert after bf16
  rounding, and the MoE is discontinuous there. The bf16 checks are therefore on the
  typical position and the greedy choice, not the worst one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from quartet.services.engine.layers.attention import AttentionMetadata
from quartet.services.engine.models.gpt_oss import build_gpt_oss
from quartet.services.engine.models.loader import load_model_dir
from quartet.services.engine.models.weights import SafetensorsWeights
from tests.engine.gpt_oss_tiny import bind_kv_pools, write_tiny_gpt_oss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CPU path is tested elsewhere)")

BLOCK = 4
NUM_BLOCKS = 64
FP32_ATOL = 2e-3
BF16_TYPICAL = 0.1  # bound on the median position's worst logit error


def prompt(seed: int, length: int) -> list[int]:
    return torch.randint(3, 1024, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gpt_oss(tmp_path_factory.mktemp("gpt-oss-tiny-grid"), dense_on_mxfp4_grid=True)


@pytest.fixture(scope="module")
def cpu_model(checkpoint: Path):
    model = build_gpt_oss(json.loads((checkpoint / "config.json").read_text()))
    model.load_weights(SafetensorsWeights(checkpoint), device="cpu", dtype=torch.float32)
    bind_kv_pools(model, NUM_BLOCKS, BLOCK)
    return model


def load_cuda(checkpoint: Path, dtype: torch.dtype):
    """fp32 keeps dense linears dense; bf16 quantizes them to MXFP4 at load, as serving does."""
    config = json.loads((checkpoint / "config.json").read_text())
    weight_format = "mxfp4" if dtype == torch.bfloat16 else "bf16"
    model = load_model_dir(checkpoint, config, device="cuda", dtype=dtype, weight_format=weight_format)
    for module in model.modules():
        if hasattr(module, "k_cache") and hasattr(module, "num_kv_heads"):
            module.k_cache = torch.zeros(NUM_BLOCKS, BLOCK, module.num_kv_heads, module.head_dim, device="cuda",
                                         dtype=dtype)  # fmt: skip
            module.v_cache = torch.zeros_like(module.k_cache)
    return model


@pytest.fixture(scope="module")
def cuda_fp32(checkpoint: Path):
    return load_cuda(checkpoint, torch.float32)


@pytest.fixture(scope="module")
def cuda_bf16(checkpoint: Path):
    return load_cuda(checkpoint, torch.bfloat16)


def logits_of(model, tokens: list[int], meta: AttentionMetadata) -> torch.Tensor:
    device = meta.positions.device
    with torch.inference_mode():
        return model.compute_logits(model(torch.tensor(tokens, device=device), meta.positions, meta)).float().cpu()


def build(device: str, **kwargs) -> AttentionMetadata:
    return AttentionMetadata.build(block_size=BLOCK, device=device, **kwargs)


def prompt_logits(model, cpu_model, length: int, device: str = "cuda") -> tuple[torch.Tensor, torch.Tensor]:
    tokens = prompt(length, length)
    table = [list(range(NUM_BLOCKS - 1, 0, -3))[: -(-length // BLOCK)]]
    kwargs = dict(query_lens=[length], seq_lens=[length], block_tables=table)
    return logits_of(model, tokens, build(device, **kwargs)), logits_of(cpu_model, tokens, build("cpu", **kwargs))


@pytest.mark.parametrize("length", [5, 12])
def test_fp32_prompt_logits_on_cuda_match_the_cpu_model(cpu_model, cuda_fp32, length: int) -> None:
    mine, ref = prompt_logits(cuda_fp32, cpu_model, length)
    assert (mine - ref).abs().max().item() < FP32_ATOL


@pytest.mark.parametrize("length", [5, 20, 37])
def test_bf16_prompt_logits_on_cuda_track_the_cpu_model(cpu_model, cuda_bf16, length: int) -> None:
    mine, ref = prompt_logits(cuda_bf16, cpu_model, length)
    assert (mine - ref).abs().max(-1).values.median().item() < BF16_TYPICAL
    assert (mine.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.75


def test_fp32_batched_decode_on_cuda_follows_the_cpu_model(cpu_model, cuda_fp32) -> None:
    """Two prompts prefill together, then 12 decode steps as a batch; logits compared at every step.

    16 prompt tokens in all: 32 token-expert pairs, the most the CUDA-core (fp32-exact) MoE path takes.
    """
    prompts = [prompt(1, 9), prompt(2, 7)]
    tables = [list(range(0, 40, 2))[:10], list(range(1, 40, 2))[:8]]
    lengths = [len(p) for p in prompts]
    kwargs = dict(query_lens=lengths, seq_lens=lengths, block_tables=tables)
    meta = build("cpu", **kwargs)
    ref = logits_of(cpu_model, prompts[0] + prompts[1], meta)[meta.last_token_indices()]
    mine = logits_of(cuda_fp32, prompts[0] + prompts[1], build("cuda", **kwargs))[meta.last_token_indices()]
    for _ in range(12):
        assert (mine - ref).abs().max().item() < FP32_ATOL
        chosen = ref.argmax(-1).tolist()
        lengths = [n + 1 for n in lengths]
        kwargs = dict(query_lens=[1, 1], seq_lens=lengths, block_tables=tables)
        ref = logits_of(cpu_model, chosen, build("cpu", **kwargs))
        mine = logits_of(cuda_fp32, chosen, build("cuda", **kwargs))


def assert_tracks(mine: torch.Tensor, ref: torch.Tensor) -> None:
    """bf16 paths that sum in another order: typical rows close, greedy choices mostly the same."""
    assert (mine - ref).abs().max(-1).values.median().item() < BF16_TYPICAL
    assert (mine.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.75


def test_decode_replayed_from_cuda_graphs_matches_the_same_step_uncaptured(checkpoint: Path) -> None:
    """A replayed decode graph gives exactly what the same static-buffer forward gives uncaptured.

    Against the plain eager step it only tracks: the graphs' fixed block-table width gives the Triton
    decode another split count, so sums run in another order, and on an H100 one step of this tiny
    model flipped a near-tied expert choice (a 1.8 logit jump) from that alone.
    """
    from quartet.services.engine.runner.native import NativeRunner
    from quartet.services.engine.runner.base import RunnerOptions
    from quartet.services.engine.sched.scheduler import ScheduledSequence
    from tests.engine.runner_steps import Steps

    options = RunnerOptions(device="cuda", dtype="bfloat16", max_num_seqs=4, block_size=BLOCK, num_kv_blocks=NUM_BLOCKS,
                            weight_format="mxfp4", cuda_graphs=True)  # fmt: skip
    runner = NativeRunner.load(checkpoint, options)
    graphs = runner._graphs
    assert graphs is not None and graphs.capture
    steps = Steps(runner)
    sequences = [steps.sequence(prompt(seed, n)) for seed, n in ((3, 9), (4, 14), (5, 6))]
    steps.run([(s, None) for s in sequences])
    graphed_rows, eager_rows = [], []
    for step in range(6):
        for s, token in zip(sequences, (7 + step, 100 + step, 900 - step)):
            steps.feed(s, token)
        graphed = steps.run([(s, 1) for s in sequences])
        batch = [ScheduledSequence(s, s.num_tokens - 1, 1, True) for s in sequences]
        graphs.capture = False  # the same static buffers and shapes, run eagerly (it rewrites the same KV)
        uncaptured = runner.execute(batch)
        graphs.capture = True
        assert torch.equal(graphed, uncaptured)
        runner._graphs = None
        eager_rows.append(runner.execute(batch))
        runner._graphs = graphs
        graphed_rows.append(graphed)
    assert_tracks(torch.cat(graphed_rows), torch.cat(eager_rows))
    assert graphs._graphs, "no decode graph was captured"


def test_prompt_prefilled_from_a_cuda_graph_tracks_the_uncaptured_and_eager_forward(checkpoint: Path) -> None:
    """One prompt alone (padded to its bucket): a replayed graph tracks the uncaptured and the eager forward."""
    from quartet.services.engine.runner.native import NativeRunner
    from quartet.services.engine.runner.base import RunnerOptions
    from tests.engine.runner_steps import Steps

    options = RunnerOptions(device="cuda", dtype="bfloat16", max_num_seqs=2, block_size=BLOCK, num_kv_blocks=NUM_BLOCKS,
                            weight_format="mxfp4", cuda_graphs=True)  # fmt: skip
    runner = NativeRunner.load(checkpoint, options)
    prefill = runner._prefill
    assert prefill is not None and prefill.capture
    assert runner.warm_up(32) > 0
    # Whatever the captures left unreferenced is now overwritten with garbage: a graph reading memory
    # it does not own (the Triton prefill's tile plan once) would fault or go wrong in the replays below.
    torch.cuda.empty_cache()
    churn = torch.full((64 << 20,), -1, dtype=torch.int32, device="cuda")
    del churn
    firsts: dict[str, list[torch.Tensor]] = {"graph": [], "uncaptured": [], "eager": []}
    for length in (5, 17, 30):
        for mode in firsts:
            prefill.capture = mode != "uncaptured"
            runner._prefill = None if mode == "eager" else prefill
            steps = Steps(runner)
            seq = steps.sequence(prompt(40 + length, length))
            firsts[mode].append(steps.run([(seq, None)]))
            steps.free(seq)
    prefill.capture = True
    # cuBLAS may pick other kernels inside a capture, so even graph vs uncaptured is held to "tracks".
    assert_tracks(torch.cat(firsts["graph"]), torch.cat(firsts["uncaptured"]))
    assert_tracks(torch.cat(firsts["graph"]), torch.cat(firsts["eager"]))
    assert prefill._graphs and not prefill._failed


def test_asynchronous_scheduling_gives_the_tokens_of_synchronous_scheduling(checkpoint: Path) -> None:
    """Pending tokens through captured decode graphs: the same greedy tokens as reading every step first.

    Requests run one at a time, so both modes run the same batch-1 graphs and kernels; a concurrent
    round then checks every request gets exactly its tokens with steps overlapping.
    """
    import asyncio

    from quartet.services.engine.core import EngineCore
    from quartet.services.engine.api.events import Chunk
    from quartet.services.engine.text.harmony.tokenizer import HarmonyTokenizer
    from quartet.services.engine.runner.native import NativeRunner
    from quartet.services.engine.api.request import GenerateRequest, SamplingParams, StoppingCriteria, TokenInput
    from quartet.services.engine.runner.base import RunnerOptions
    from quartet.services.engine.sched.scheduler import SchedulerConfig

    options = RunnerOptions(device="cuda", dtype="bfloat16", max_num_seqs=4, block_size=BLOCK, num_kv_blocks=NUM_BLOCKS,
                            weight_format="mxfp4", cuda_graphs=True)  # fmt: skip
    runner = NativeRunner.load(checkpoint, options)
    runner.warm_up(64)
    core = EngineCore(model_id="tiny", tokenizer=HarmonyTokenizer.load(None), runner=runner,
                      scheduler=SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=64), num_threads=1,
                      async_scheduling=True)  # fmt: skip

    async def tokens(seed: int, n: int) -> list[int]:
        req = GenerateRequest(input=TokenInput(tuple(prompt(seed, 7 + seed))), sampling=SamplingParams(temperature=0),
                              stopping=StoppingCriteria(max_tokens=n, ignore_eos=True))  # fmt: skip
        return [t async for event in core.generate(req) if isinstance(event, Chunk) for t in event.token_ids]

    async def scenario() -> None:
        overlapped = [await tokens(seed, 12) for seed in range(3)]
        core.async_scheduling = False
        synchronous = [await tokens(seed, 12) for seed in range(3)]
        core.async_scheduling = True
        assert overlapped == synchronous
        together = await asyncio.gather(*(tokens(seed, 10 + seed) for seed in range(4)))
        assert [len(t) for t in together] == [10, 11, 12, 13]
        await core.close()

    asyncio.run(scenario())
    assert core.metrics.steps.labels(overlapped="true")._value.get() > 30
