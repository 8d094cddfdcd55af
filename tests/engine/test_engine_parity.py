"""The native Llama model against Hugging Face transformers on the bundled model."""

from __future__ import annotations

import pytest
import torch

from quartet.services.engine.core import EngineCore
from quartet.services.engine.api.events import Chunk
from quartet.services.engine.model_cache import ensure_bundled_model
from quartet.services.engine.runner.native import NativeRunner
from quartet.services.engine.api.request import ChatInput, ChatMessage, GenerateRequest, SamplingParams, StoppingCriteria, TextInput
from quartet.services.engine.runner.base import RunnerOptions
from quartet.services.engine.settings import EngineSettings
from tests.engine.runner_steps import Steps
from tests.helpers import ThreadLoop

PROMPTS = [
    ChatInput((ChatMessage("user", "What is the capital of France?"),)),
    ChatInput((ChatMessage("system", "You are terse."), ChatMessage("user", "List three colours."))),
    TextInput("def fibonacci(n):\n    "),
]


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(ensure_bundled_model(quiet=True)), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def native_runner() -> NativeRunner:
    # Dense fp32 weights (ENGINE_WEIGHT_FORMAT=bf16 means dense in ENGINE_DTYPE): the parity reference.
    options = RunnerOptions(max_num_seqs=4, num_kv_blocks=64, weight_format="bf16")
    return NativeRunner.load(ensure_bundled_model(quiet=True), options)


@pytest.fixture(scope="module")
def transformers_core():
    core = EngineCore.from_settings(EngineSettings(_env_file=None, backend="transformers", max_num_seqs=2))
    yield core
    with ThreadLoop("transformers-close") as loop:
        loop.run(core.close())


@pytest.mark.parametrize("prompt", PROMPTS, ids=["chat", "system", "code"])
def test_prompt_logits_match_transformers(engine_core, hf_model, native_runner, prompt) -> None:
    ids = engine_core.tokenizer.encode_input(prompt)
    ours = native_runner.prompt_logits(ids)
    with torch.inference_mode():
        theirs = hf_model(torch.tensor([ids])).logits[0].float()
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 2e-3
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


def test_decode_with_kv_cache_matches_a_full_forward(hf_model, native_runner) -> None:
    ids = [1, 4093, 198, 19556, 905, 28, 638, 359, 346, 47]
    run = Steps(native_runner)
    seq = run.sequence(ids[:4])
    steps = [run.run([(seq, None)])[0]]
    for position in range(4, len(ids)):
        run.feed(seq, ids[position])
        steps.append(run.run([(seq, 1)])[0])
    with torch.inference_mode():
        reference = hf_model(torch.tensor([ids])).logits[0, 3:].float()
    assert (torch.stack(steps) - reference).abs().max().item() < 2e-3


def test_batched_decode_matches_single_decode(native_runner) -> None:
    prompts = [[1, 4093, 198, 19556], [1, 9690, 198, 2683, 359, 253, 5356]]
    run = Steps(native_runner)
    single = []
    for prompt in prompts:
        seq = run.sequence(prompt)
        run.run([(seq, None)])
        run.feed(seq, 905)
        single.append(run.run([(seq, 1)])[0])
        run.free(seq)
    first, second = run.sequence(prompts[0]), run.sequence(prompts[1])
    run.run([(second, None)])
    run.run([(first, None)])  # blocks interleaved in the pool, not in sequence order
    run.feed(first, 905)
    run.feed(second, 905)
    batched = run.run([(second, 1), (first, 1)])
    assert (batched[0] - single[1]).abs().max().item() < 1e-3
    assert (batched[1] - single[0]).abs().max().item() < 1e-3


def test_packed_prefill_matches_one_prompt_at_a_time(native_runner) -> None:
    prompts = [[1, 4093, 198, 19556, 905], [1, 9690], [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173]]
    run = Steps(native_runner)
    single = []
    for prompt in prompts:
        seq = run.sequence(prompt)
        first = run.run([(seq, None)])[0]
        run.feed(seq, int(first.argmax()))
        single.append((first, run.run([(seq, 1)])[0]))
        run.free(seq)
    seqs = [run.sequence(p) for p in prompts]
    packed = run.run([(s, None) for s in seqs])
    for seq, token in zip(seqs, packed.argmax(-1).tolist()):
        run.feed(seq, token)
    following = run.run([(s, 1) for s in seqs])
    for i, (first, second) in enumerate(single):
        assert (packed[i] - first).abs().max().item() < 1e-3
        assert (following[i] - second).abs().max().item() < 1e-3


async def greedy_tokens(core: EngineCore, prompt, count: int) -> list[int]:
    request = GenerateRequest(
        input=prompt,
        sampling=SamplingParams(temperature=0),
        stopping=StoppingCriteria(max_tokens=count, ignore_eos=True),
    )
    return [t async for event in core.generate(request) if isinstance(event, Chunk) for t in event.token_ids]


@pytest.mark.parametrize("prompt", PROMPTS[:2], ids=["chat", "system"])
async def test_native_and_transformers_backends_agree_on_32_greedy_tokens(
    engine_core, transformers_core, hf_model, prompt
) -> None:
    native = await greedy_tokens(engine_core, prompt, 32)
    reference = await greedy_tokens(transformers_core, prompt, 32)
    assert len(native) == 32
    assert native == reference
    # And HF's own generate loop, which stops at the end-of-sequence token: its output is a prefix of ours.
    ids = engine_core.tokenizer.encode_input(prompt)
    with torch.inference_mode():
        generated = hf_model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=32,
            do_sample=False,
        )[0, len(ids) :].tolist()
    assert native[: len(generated)] == generated
    assert transformers_core.model_info().backend == "transformers"


def test_bfloat16_weights_stay_close_to_float32(engine_core, native_runner) -> None:
    options = RunnerOptions(dtype="bfloat16", num_kv_blocks=16, weight_format="bf16")
    bf16 = NativeRunner.load(ensure_bundled_model(quiet=True), options)
    ids = engine_core.tokenizer.encode_input(PROMPTS[0])
    low = bf16.prompt_logits(ids)
    full = native_runner.prompt_logits(ids)
    similarity = torch.nn.functional.cosine_similarity(low, full, dim=-1)
    assert similarity.min().item() > 0.99
    assert low[-1].argmax() == full[-1].argmax()
    assert not bf16.model.lm_head.is_transposed and native_runner.model.lm_head.is_transposed
