"""Weight loading: MXFP4 dense linears (ENGINE_WEIGHT_FORMAT), both checkpoint namings of gpt-oss experts,
lazy sharded safetensors, and the errors a wrong checkpoint gets. CPU, tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from quartet.kernels import dequantize_torch, quantize
from quartet.services.engine.layers.attention import AttentionMetadata
from quartet.services.engine.models.loader import load_model, load_model_dir, resolve_weight_format, weight_bytes
from quartet.services.engine.models.mxfp4_linear import MXFP4Linear, quantize_linears
from quartet.services.engine.models.weights import DictWeights, SafetensorsWeights
from tests.engine.gpt_oss_tiny import bind_kv_pools, on_mxfp4_grid, write_tiny_gpt_oss


@pytest.fixture(scope="module")
def gpt_oss_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gpt_oss(tmp_path_factory.mktemp("gpt-oss-tiny"), seed=3, dense_on_mxfp4_grid=True)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # on the MXFP4 grid, so quantizing at load loses nothing and both formats must agree
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(on_mxfp4_grid(module.weight))
    directory = tmp_path_factory.mktemp("llama-tiny")
    model.save_pretrained(directory)
    return directory


def config_of(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


def prompt_logits(model: torch.nn.Module, tokens: list[int]) -> torch.Tensor:
    bind_kv_pools(model, num_blocks=16, block_size=4)
    meta = AttentionMetadata.contiguous([len(tokens)], block_size=4)
    return model.compute_logits(model(torch.tensor(tokens), meta.positions, meta))


def test_mxfp4_linear_is_the_matmul_with_the_dequantized_weight() -> None:
    g = torch.Generator().manual_seed(0)
    dense, bias, x = torch.randn(96, 320, generator=g), torch.randn(96, generator=g), torch.randn(5, 320, generator=g)
    layer = MXFP4Linear.from_dense(dense, bias)
    expected = x @ dequantize_torch(quantize(dense)).T + bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    # 4-bit weights: close to the dense product, not equal to it.
    error = (layer(x) - (x @ dense.T + bias)).norm() / (x @ dense.T).norm()
    assert 0 < error.item() < 0.15
    assert layer.blocks.dtype == torch.uint8 and layer.blocks.numel() == 96 * 320 // 2


def test_auto_format_is_dense_on_the_cpu_and_mxfp4_on_cuda() -> None:
    assert resolve_weight_format("auto", "cpu") == "bf16"
    assert resolve_weight_format("auto", "cuda") == "mxfp4"
    assert resolve_weight_format("mxfp4", "cpu") == "mxfp4"
    with pytest.raises(ValueError, match="ENGINE_WEIGHT_FORMAT"):
        resolve_weight_format("int4", "cpu")


def test_llama_with_mxfp4_linears_matches_dense_on_grid_weights(llama_dir: Path) -> None:
    dense = load_model_dir(llama_dir, config_of(llama_dir), device="cpu", dtype=torch.float32, weight_format="bf16")
    quant = load_model_dir(llama_dir, config_of(llama_dir), device="cpu", dtype=torch.float32, weight_format="mxfp4")
    replaced = {name for name, m in quant.named_modules() if isinstance(m, MXFP4Linear)}
    assert not any(isinstance(m, MXFP4Linear) for m in dense.modules())
    per_layer = ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")
    assert replaced == {f"layers.{i}.{p}" for i in range(2) for p in per_layer} | {"lm_head"}
    tokens = [1, 17, 300, 42, 7, 99, 256, 3]
    torch.testing.assert_close(prompt_logits(quant, tokens), prompt_logits(dense, tokens), rtol=1e-4, atol=1e-4)
    assert weight_bytes(quant) < 0.5 * weight_bytes(dense)


def test_gpt_oss_formats_and_the_original_expert_names(gpt_oss_dir: Path) -> None:
    config = config_of(gpt_oss_dir)
    tensors = load_file(str(gpt_oss_dir / "model.safetensors"))
    dense = load_model(config, DictWeights(tensors), device="cpu", dtype=torch.float32, weight_format="bf16")
    # The original release names experts block.N.mlp.mlp1_weight.blocks / mlp2_* (same bytes).
    renamed = {}
    for name, tensor in tensors.items():
        if ".mlp.experts." in name:
            layer = name.split(".")[2]
            proj, _, part = name.rpartition(".")[2].partition("_proj_")
            mlp = "mlp1" if proj == "gate_up" else "mlp2"
            name = f"block.{layer}.mlp.{mlp}_weight.{part}" if part != "bias" else f"block.{layer}.mlp.{mlp}_bias"
        renamed[name] = tensor
    original = load_model(config, DictWeights(renamed), device="cpu", dtype=torch.float32, weight_format="bf16")
    quant = load_model(config, DictWeights(tensors), device="cpu", dtype=torch.float32, weight_format="mxfp4")
    tokens = [5, 900, 12, 77, 300, 8, 41, 600, 2, 19, 3]
    reference = prompt_logits(dense, tokens)
    assert torch.equal(prompt_logits(original, tokens), reference)
    # Every dense linear but the 8-expert router (too small to be worth it) is MXFP4 now.
    quantized = {name for name, m in quant.named_modules() if isinstance(m, MXFP4Linear)}
    assert quantized == {f"layers.{i}.self_attn.{p}" for i in range(4) for p in ("qkv_proj", "o_proj")} | {"lm_head"}
    torch.testing.assert_close(prompt_logits(quant, tokens), reference, rtol=1e-4, atol=1e-4)


def test_sharded_checkpoints_load_lazily_through_the_index(gpt_oss_dir: Path, tmp_path: Path) -> None:
    tensors = load_file(str(gpt_oss_dir / "model.safetensors"))
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(tmp_path / file))
    index = {"weight_map": {n: file for file, part in halves.items() for n in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    weights = SafetensorsWeights(tmp_path)
    assert sorted(weights.names()) == names
    assert torch.equal(weights.get(names[1]), tensors[names[1]])
    with pytest.raises(KeyError, match="not in the checkpoint"):
        weights.get("model.layers.99.mlp.router.weight")


def test_a_checkpoint_without_experts_says_which_tensor_is_missing(gpt_oss_dir: Path) -> None:
    tensors = {
        k: v for k, v in load_file(str(gpt_oss_dir / "model.safetensors")).items() if "layers.2.mlp.experts" not in k
    }
    with pytest.raises(KeyError, match="mlp1_weight|gate_up_proj"):
        load_model(
            config_of(gpt_oss_dir), DictWeights(tensors), device="cpu", dtype=torch.float32, weight_format="bf16"
        )


def test_quantize_linears_skips_small_layers_and_what_it_is_told_to() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.Linear(512, 32), torch.nn.Linear(512, 512))
    replaced = quantize_linears(model, skip=lambda name, _: name == "2")
    assert replaced == ["0"] and isinstance(model[0], MXFP4Linear)
    assert isinstance(model[1], torch.nn.Linear) and isinstance(model[2], torch.nn.Linear)


def test_engine_weight_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from quartet.services.engine.settings import EngineSettings

    assert EngineSettings(_env_file=None).weight_format == "auto"
    monkeypatch.setenv("ENGINE_WEIGHT_FORMAT", "mxfp4")
    assert EngineSettings(_env_file=None).weight_format == "mxfp4"
    monkeypatch.setenv("ENGINE_WEIGHT_FORMAT", "int4")
    with pytest.raises(ValidationError, match="weight_format|ENGINE_WEIGHT_FORMAT"):
        EngineSettings(_env_file=None)


def test_native_runner_loads_gpt_oss_with_mxfp4_linears(gpt_oss_dir: Path) -> None:
    from quartet.services.engine.runner.native import NativeRunner
    from quartet.services.engine.runner.base import RunnerOptions

    runner = NativeRunner.load(gpt_oss_dir, RunnerOptions(num_kv_blocks=16, block_size=4, weight_format="mxfp4"))
    dense = load_model_dir(gpt_oss_dir, config_of(gpt_oss_dir), device="cpu", dtype=torch.float32)
    tokens = [5, 900, 12, 77, 300, 8]
    assert isinstance(runner.model.lm_head, MXFP4Linear) and runner.info.architecture == "gpt_oss"
    torch.testing.assert_close(runner.prompt_logits(tokens), prompt_logits(dense, tokens), rtol=1e-4, atol=1e-4)
