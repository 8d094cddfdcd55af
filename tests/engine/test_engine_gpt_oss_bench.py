"""The GPU benchmark's plumbing, on the CPU at tiny shapes: random gpt-oss weights through the real EngineCore
(scheduler, paged KV, runner, Harmony tokenizer), transformers beside it, and the table. Nothing is timed here;
the figures only have to exist and be positive."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from benchmarks.engine_gpu import Recorder, Workload, ceilings, decode_bytes_per_token, run_pass, table
from quartet.services.engine.models.gpt_oss import GptOssConfig
from quartet.services.engine.models.loader import load_model
from quartet.services.engine.models.random_weights import RandomGptOssWeights, hf_config_dict

TINY = GptOssConfig(
    num_hidden_layers=2, hidden_size=128, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
    num_local_experts=4, num_experts_per_tok=2,
)  # fmt: skip
WORK = Workload(decode_tokens=4, ttft_prompts=(16,), ttft_repeats=1, concurrency=(3,), concurrent_prompt=16,
                concurrent_tokens=4)  # fmt: skip


def test_random_weights_have_the_released_shapes_and_load() -> None:
    weights = RandomGptOssWeights(TINY, device="cpu")
    blocks = weights.get("model.layers.1.mlp.experts.gate_up_proj_blocks")
    assert blocks.dtype == torch.uint8 and blocks.shape == (4, 256, 4, 16)
    assert torch.equal(blocks, weights.get("model.layers.1.mlp.experts.gate_up_proj_blocks"))  # seeded per name
    model = load_model(hf_config_dict(TINY), weights, device="cpu", dtype=torch.float32, weight_format="mxfp4")
    expert_bytes = 2 * (2 * 128 * 128 // 2 + 128 * 128 // 2 + 3 * 128 * 4)  # top-2 of gate_up + down, codes + scales
    assert decode_bytes_per_token(model) > expert_bytes * TINY.num_hidden_layers


def test_smoke_pass_through_the_engine_and_transformers(tmp_path: Path) -> None:
    pytest.importorskip("quicktok")
    args = argparse.Namespace(
        device="cpu", weight_format="bf16", cuda_graphs=False, skip_hf=False, deadline=float("inf")
    )
    record = Recorder(tmp_path)
    run_pass(dataclasses.replace(TINY, layer_types=()), WORK, args, record, "smoke")
    rows = {r["metric"]: r for r in record.rows}
    assert set(rows) == {"setup", "decode_bs1", "ttft_16", "aggregate_3", "hf_decode_bs1"}
    assert rows["decode_bs1"]["new_tokens"] == WORK.decode_tokens and rows["decode_bs1"]["tokens_per_second"] > 0
    assert rows["aggregate_3"]["tokens_per_second"] > 0 and rows["ttft_16"]["seconds"] > 0
    assert len((tmp_path / "engine_gpu.jsonl").read_text().splitlines()) == len(record.rows)
    assert json.loads((tmp_path / "engine_gpu.jsonl").read_text().splitlines()[0])["metric"] == "hf_decode_bs1"
    text = table(record.rows, "smoke")
    assert "Decode, batch 1 (128-token prompt, 4 new)" in text and "Aggregate output, 3 concurrent" in text


def test_the_ceiling_is_bandwidth_over_bytes_per_token() -> None:
    # The issue's own figure: 3.0 TB/s over 3.7 GB a token is about 810 tok/s.
    assert ceilings(3.0e12, 2_000_000_000) == pytest.approx(
        {"ceiling_tps_issue": 810.8, "ceiling_tps_model": 1500.0}, rel=1e-3
    )
