"""The dense family on small random checkpoints against Hugging Face transformers.

Each case saves a tiny random model of one family (Qwen2: q/k/v bias; Qwen3:
q/k RMSNorm; Llama 3: "llama3" RoPE scaling, plus o_proj bias; Qwen2 with
sliding-window layers) with ``save_pretrained``, loads it through the native
runner (paged KV cache, 4-token blocks so sequences span many blocks), and
compares prompt logits (max abs difference < 1e-4 in float32) and 32 greedy
tokens decoded step by step through the paged cache against HF's ``generate``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from quartet.services.engine.models.registry import is_supported
from quartet.services.engine.runner.native import NativeRunner
from quartet.services.engine.runner.base import RunnerOptions
from tests.engine.runner_steps import Steps

TINY = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)


def qwen2():
    from transformers import Qwen2Config

    return Qwen2Config(**TINY)


def qwen2_sliding():
    from transformers import Qwen2Config

    # Layers from max_window_layers on use a 6-token window: short enough that 40-token sequences cross it.
    return Qwen2Config(**TINY, use_sliding_window=True, sliding_window=6, max_window_layers=1)


def qwen3():
    from transformers import Qwen3Config

    return Qwen3Config(**TINY, head_dim=32)


def llama3():
    from transformers import LlamaConfig

    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
    }
    return LlamaConfig(**TINY, rope_parameters=rope, attention_bias=True)


CASES = {"qwen2": qwen2, "qwen2-sliding": qwen2_sliding, "qwen3": qwen3, "llama3": llama3}


@pytest.fixture(scope="module", params=list(CASES))
def checkpoint(request, tmp_path_factory) -> tuple[str, Path, object]:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = CASES[request.param]()
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # random init has tiny weights whose logits tie; widen them so argmax is well defined
        for parameter in model.parameters():
            parameter.mul_(4.0 if parameter.dim() > 1 else 1.0)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    return request.param, path, model


PROMPT = [5, 17, 42, 7, 99, 3, 64, 12, 200, 31, 8]


def test_prompt_logits_match_transformers(checkpoint) -> None:
    name, path, hf = checkpoint
    runner = NativeRunner.load(path, RunnerOptions(block_size=4, num_kv_blocks=64, weight_format="bf16"))
    assert runner.info.architecture == name.split("-")[0].replace("llama3", "llama")
    ours = runner.prompt_logits(PROMPT)
    with torch.inference_mode():
        theirs = hf(torch.tensor([PROMPT])).logits[0]
    assert (ours - theirs).abs().max().item() < 1e-4


def test_32_greedy_tokens_through_the_paged_cache_match_generate(checkpoint) -> None:
    _, path, hf = checkpoint
    runner = NativeRunner.load(path, RunnerOptions(block_size=4, num_kv_blocks=64, weight_format="bf16"))
    steps = Steps(runner)
    seq = steps.sequence(PROMPT)
    ours = []
    steps.run([(seq, 5)])  # the prompt in two chunks, the second reading the first from the pool
    logits = steps.run([(seq, None)])
    for _ in range(32):
        token = int(logits[0].argmax())
        ours.append(token)
        steps.feed(seq, token)
        logits = steps.run([(seq, 1)])
    with torch.inference_mode():
        theirs = hf.generate(
            torch.tensor([PROMPT]),
            attention_mask=torch.ones(1, len(PROMPT), dtype=torch.long),
            max_new_tokens=32,
            min_new_tokens=32,
            do_sample=False,
        )[0, len(PROMPT) :].tolist()
    assert ours == theirs


def test_registry_names_what_it_cannot_run() -> None:
    from quartet.services.engine.models.registry import build_model

    assert is_supported({"model_type": "qwen3"}) and is_supported({"architectures": ["LlamaForCausalLM"]})
    with pytest.raises(ValueError, match="ENGINE=transformers"):
        build_model({"model_type": "mamba"})
