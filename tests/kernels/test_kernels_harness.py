"""The kernel harness on its tiny cases: manifests, cached inputs, execute_variant, metrics, archives."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from benchmarks.harness import Experiment, archive, check_targets, format_table, list_cases, load_case, write_metrics
from benchmarks.harness.inputs import case_inputs
from benchmarks.harness.report import profile_trace, speedup_label

ISSUE_CASES = {"gpt_oss_gate_up": (5760, 2880), "gpt_oss_down": (2880, 2880), "gpt_oss_qkv": (5120, 2880),
               "gpt_oss_o": (2880, 4096), "gpt_oss_unembed": (201088, 2880), "dense_28672x8192": (28672, 8192)}


@pytest.fixture(autouse=True)
def input_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUARTET_KERNEL_INPUTS", str(tmp_path / "inputs"))
    return tmp_path / "inputs"


def test_the_issue_cases_exist_with_their_shapes_and_m() -> None:
    assert set(ISSUE_CASES) | {"gpt_oss_moe"} <= set(list_cases())
    for name, (n, k) in ISSUE_CASES.items():
        m = load_case(name).manifest
        assert (m.shape["n"], m.shape["k"]) == (n, k) and m.m == (1, 4, 16, 256, 2048)
    moe = load_case("gpt_oss_moe").manifest
    assert moe.shape == {"experts": 32, "hidden": 2880, "intermediate": 2880, "top_k": 4}


def test_inputs_are_deterministic_and_cached_on_disk(input_cache: Path, device) -> None:
    case = load_case("tiny_linear")
    first = case_inputs(case, 1, device)
    files = sorted(p.name for p in (input_cache / "tiny_linear").iterdir())
    assert files == [f"weights-seed3-{device.type}.pt", f"x-m1-seed3-{device.type}.pt"]
    again = case_inputs(case, 1, device)  # from the files
    for p in (input_cache / "tiny_linear").iterdir():
        p.unlink()
    fresh = case_inputs(case, 1, device)  # regenerated from the seed
    for other in (again, fresh):
        assert torch.equal(other["x"], first["x"]) and torch.equal(other["ocp"].blocks, first["ocp"].blocks)


@pytest.mark.parametrize("name", ["tiny_linear", "tiny_moe"])
def test_run_all_measures_every_variant_with_parity(name: str, device) -> None:
    case = load_case(name)
    for m in case.manifest.m:
        exp = Experiment(case, m, device, samples=3)
        results = exp.run_all()
        assert results[0].is_baseline and results[0].variant == "torch_bf16"
        assert len(results) >= 3
        for r in results:
            assert r.parity_ok, f"{r.variant} at m={m}: rel err {r.rel_l2:.2e}"
            assert r.median_us > 0 and r.p20_us <= r.median_us <= r.p80_us and r.bytes > 0 and r.flops > 0


def test_a_wrong_variant_fails_parity(device) -> None:
    exp = Experiment(load_case("tiny_linear"), 1, device, samples=3)
    exp.run_all()
    bad = exp.execute_variant("wrong", lambda inp: torch.zeros(1, 48, dtype=torch.bfloat16, device=device))
    assert not bad.parity_ok and bad.rel_l2 == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="baseline first"):
        Experiment(load_case("tiny_linear"), 1, device).execute_variant("x", lambda inp: inp["x"])


def test_metrics_targets_traces_and_archive(tmp_path: Path, device) -> None:
    case = load_case("tiny_linear")
    exp = Experiment(case, 1, device, samples=3)
    results = exp.run_all()
    checks = check_targets(case, results)
    assert [c.passed for c in checks] == [True]
    trace = profile_trace(case.model.variants(1)["gemv_fma"], exp.inputs, tmp_path / "trace.json.gz")
    assert json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    write_metrics(tmp_path / "metrics.json", {"device": "test"}, results, checks)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    row = doc["results"][1]
    for key in ("median_us", "p20_us", "p80_us", "gbps", "tflops", "rel_l2", "max_rel", "pct_copy_bw"):
        assert key in row
    assert doc["targets"][0]["passed"] is True
    folder = archive(case, results, [trace], root=tmp_path / "archive")
    assert folder.name.endswith(f"-tiny_linear-{speedup_label(results)}")
    assert {p.name for p in folder.iterdir()} == {"manifest.yaml", "results.json", "table.txt", "trace.json.gz"}
    assert "gemv_dot_scaled" in format_table(results)
