"""The sampler on hand-made logits, without the model."""

from __future__ import annotations

import math

import pytest
import torch

from quartet.services.engine.api.request import SamplingParams
from quartet.services.engine.runner.sampler import SamplingRow, new_generator, sample, shape_logits, truncated_probs


def row(params: SamplingParams, seed: int | None = 0, prompt=(), output=()) -> SamplingRow:
    return SamplingRow(params, new_generator(seed, 0), list(prompt), list(output))


def test_greedy_picks_the_argmax_per_row() -> None:
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, -1.0]])
    tokens = sample(logits, [row(SamplingParams(temperature=0))] * 2)
    assert [t.token_id for t in tokens] == [1, 0]


def test_same_seed_same_draws_and_different_seeds_differ() -> None:
    logits = torch.zeros(1, 1000)
    params = SamplingParams(temperature=1.0)

    def draws(seed: int) -> list[int]:
        r = row(params, seed)
        return [sample(logits, [r])[0].token_id for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_top_k_keeps_only_the_k_best() -> None:
    probs = truncated_probs(torch.tensor([1.0, 4.0, 3.0, 2.0]), SamplingParams(temperature=1.0, top_k=2))
    assert probs[0] == 0 and probs[3] == 0
    assert probs[1] > probs[2] > 0
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-6)


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    probs = truncated_probs(logits, SamplingParams(top_p=0.8))
    assert probs[2] == 0 and probs[3] == 0
    assert torch.allclose(probs[:2], torch.tensor([0.5, 0.3]) / 0.8)
    # 0.81 needs the third token too
    assert truncated_probs(logits, SamplingParams(top_p=0.81))[2] > 0


def test_min_p_drops_tokens_below_the_fraction_of_the_best() -> None:
    logits = torch.log(torch.tensor([0.6, 0.25, 0.1, 0.05]))
    probs = truncated_probs(logits, SamplingParams(min_p=0.2))
    assert probs[2] == 0 and probs[3] == 0 and probs[1] > 0


def test_low_temperature_sharpens() -> None:
    logits = torch.tensor([1.0, 2.0])
    assert (
        truncated_probs(logits, SamplingParams(temperature=0.1))[1]
        > truncated_probs(logits, SamplingParams(temperature=1.0))[1]
    )


def test_logit_bias_can_force_a_token_under_greedy() -> None:
    logits = torch.tensor([[5.0, 0.0, 1.0]])
    tokens = sample(logits, [row(SamplingParams(temperature=0, logit_bias={2: 100.0}))])
    assert tokens[0].token_id == 2


def test_penalties_follow_their_definitions() -> None:
    logits = torch.tensor([2.0, -2.0, 1.0, 0.0])
    shaped = shape_logits(logits.clone(), SamplingParams(repetition_penalty=2.0), prompt_ids=[0], output_ids=[1])
    assert shaped.tolist() == [1.0, -4.0, 1.0, 0.0]
    shaped = shape_logits(
        logits.clone(),
        SamplingParams(presence_penalty=0.5, frequency_penalty=0.25),
        prompt_ids=[3],
        output_ids=[2, 2, 0],
    )
    assert shaped.tolist() == pytest.approx([2.0 - 0.5 - 0.25, -2.0, 1.0 - 0.5 - 0.5, 0.0])


def test_logprobs_come_from_the_raw_distribution_and_top_is_sorted() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    token = sample(logits, [row(SamplingParams(temperature=0, logprobs=True, top_logprobs=3, logit_bias={3: 50.0}))])[0]
    raw = torch.log_softmax(logits[0], -1)
    assert token.token_id == 3
    assert token.logprob == pytest.approx(float(raw[3]))
    assert [t for t, _ in token.top] == [0, 1, 2]
    assert [lp for _, lp in token.top] == pytest.approx(raw[:3].tolist())


def test_seeded_choices_of_one_request_differ() -> None:
    a, b = new_generator(5, 0), new_generator(5, 1)
    assert torch.rand(4, generator=a).tolist() != torch.rand(4, generator=b).tolist()
