"""Weight-only int8 linears (ENGINE_WEIGHT_FORMAT=int8, the fast CPU decode) and their stated error."""

from __future__ import annotations

import pytest
import torch

from quartet.services.engine.model_cache import ensure_bundled_model
from quartet.services.engine.models.int8_linear import Int8Linear
from quartet.services.engine.models.linear import Linear
from quartet.services.engine.runner.native import NativeRunner
from quartet.services.engine.api.request import ChatInput, ChatMessage
from quartet.services.engine.runner.base import RunnerOptions
from quartet.services.engine.text.tokenizer import load_tokenizer
from quartet.services.engine.text.tokenizer_base import Tokenizer
from tests.engine.runner_steps import Steps


def test_codes_round_to_nearest_per_output_channel() -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 64) * torch.linspace(0.01, 3.0, 48)[:, None]  # rows of very different ranges
    layer = Int8Linear.from_dense(weight)
    scales = layer.scales.float()[:, None]
    assert layer.codes.dtype == torch.int8 and layer.codes.abs().max() <= 127
    # Round to nearest with the bf16-rounded scale: within half a step (plus the scale's own rounding).
    assert ((layer.dequantized() - weight).abs() <= 0.5 * scales + weight.abs() * 2**-8).all()


def test_product_matches_the_dequantized_weight_and_rows_are_independent() -> None:
    torch.manual_seed(1)
    weight, bias = torch.randn(96, 64) * 0.05, torch.randn(96)
    layer = Int8Linear.from_dense(weight, bias)
    x = torch.randn(8, 64)
    out = layer(x)
    exact = x.bfloat16().float() @ layer.dequantized().t() + bias
    torch.testing.assert_close(out, exact, rtol=2e-2, atol=2e-2)  # bf16 rounding of the result
    # Activations are not quantized: a row's result does not depend on what it is batched with.
    for i in range(8):
        torch.testing.assert_close(layer(x[i : i + 1])[0], out[i], rtol=1e-2, atol=1e-2)
    big = x.clone()
    big[1:] *= 1000.0
    torch.testing.assert_close(layer(big)[0], out[0], rtol=1e-2, atol=1e-2)


@pytest.fixture(scope="module")
def runners() -> tuple[NativeRunner, NativeRunner, Tokenizer]:
    directory = ensure_bundled_model(quiet=True)
    dense = NativeRunner.load(directory, RunnerOptions(num_kv_blocks=32, weight_format="bf16"))
    int8 = NativeRunner.load(directory, RunnerOptions(num_kv_blocks=32, weight_format="int8"))
    return dense, int8, load_tokenizer(directory)


def test_bundled_model_in_int8_stays_within_the_stated_tolerance(runners) -> None:
    """docs/perf-log/cpu-engine.md: prompt logits keep cosine similarity > 0.97 with fp32, and the answer is
    the same."""
    dense, int8, tokenizer = runners
    assert not any(isinstance(m, Linear) for m in int8.model.modules())
    ids = tokenizer.encode_input(ChatInput((ChatMessage("user", "What is the capital of France?"),)))
    similarity = torch.nn.functional.cosine_similarity(int8.prompt_logits(ids), dense.prompt_logits(ids), dim=-1)
    assert similarity.min().item() > 0.97
    steps = Steps(int8)
    seq = steps.sequence(ids)
    logits = steps.run([(seq, None)])
    answer = []
    for _ in range(12):
        answer.append(int(logits[0].argmax()))
        steps.feed(seq, answer[-1])
        logits = steps.run([(seq, 1)])
    assert "Paris" in tokenizer.decode(answer)


def test_int8_is_refused_off_the_cpu() -> None:
    from quartet.services.engine.models.loader import load_model
    from quartet.services.engine.models.weights import DictWeights

    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        load_model({"model_type": "llama"}, DictWeights({}), device="meta", dtype=torch.float32, weight_format="int8")


def test_auto_is_int8_for_the_dense_family_on_the_cpu_only() -> None:
    from quartet.services.engine.models.loader import resolve_weight_format

    assert resolve_weight_format("auto", "cpu", "llama") == "int8"
    assert resolve_weight_format("auto", "cpu", "qwen3") == "int8"
    assert resolve_weight_format("auto", "cpu", "gpt_oss") == "bf16"  # the CPU oracle for the GPU path stays dense
    assert resolve_weight_format("auto", "cuda", "llama") == "mxfp4"
