"""Choose the next token from logits: penalties, bias, temperature, top-k/top-p/min-p, seeded draws.

Order of operations follows vLLM: logprobs are reported from the raw model
distribution; a grammar constraint's bitmask removes the tokens the grammar
forbids; logit_bias and penalties shape the logits; temperature 0 takes the
argmax; otherwise temperature scales, top-k, top-p and min-p truncate, and a
per-request ``torch.Generator`` draws, so a seed reproduces a request no
matter what else runs beside it. Last, a constrained row's token is vetted
against its token budget (``constraints/closing.py``): one that would leave the
output unable to close in time gives way to the grammar's ending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from quartet.services.engine.api.request import SamplingParams


class TokenMask(Protocol):
    """A row's grammar state (``constraints.SequenceConstraint``): its allowed-token bitmask for this step."""

    def wait(self) -> torch.Tensor | None: ...

    def vet(self, token_id: int) -> int:
        """The token to keep for a sampled one (the grammar's ending when the budget needs it)."""
        ...


@dataclass(slots=True)
class SamplingRow:
    """What the sampler needs about one sequence at one step."""

    params: SamplingParams
    generator: torch.Generator | None
    prompt_ids: Sequence[int]
    output_ids: Sequence[int]
    constraint: TokenMask | None = None


@dataclass(frozen=True, slots=True)
class SampledToken:
    token_id: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = field(default_factory=tuple)


def new_generator(seed: int | None, index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator per choice: choice i of a seeded request uses seed + i, so choices differ but repeat."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed((seed + index) % (1 << 64))
    return generator


def is_greedy(params: SamplingParams) -> bool:
    return params.temperature == 0


def is_argmax_only(params: SamplingParams, constraint: TokenMask | None) -> bool:
    """The row's token is its logits' argmax, nothing else: the device can pick it (no host sampling)."""
    return constraint is None and is_greedy(params) and not _needs_shaping(params) and not params.logprobs


def _needs_shaping(params: SamplingParams) -> bool:
    return bool(
        params.logit_bias
        or params.presence_penalty
        or params.frequency_penalty
        or (params.repetition_penalty is not None and params.repetition_penalty != 1.0)
    )


def sample(logits: torch.Tensor, rows: Sequence[SamplingRow]) -> list[SampledToken]:
    """Pick one token per row of ``logits`` [B, V] (float32)."""
    raw = logits
    logits = _masked(logits, rows)
    if all(is_greedy(r.params) and not _needs_shaping(r.params) and not r.params.logprobs for r in rows):
        tokens = [SampledToken(int(t)) for t in logits.argmax(dim=-1).tolist()]
    else:
        tokens = [_sample_row(logits[i], raw[i], row) for i, row in enumerate(rows)]
    return [_vetted(tokens[i], raw[i], row) if row.constraint is not None else tokens[i] for i, row in enumerate(rows)]


def _vetted(token: SampledToken, raw_logits: torch.Tensor, row: SamplingRow) -> SampledToken:
    assert row.constraint is not None
    kept = row.constraint.vet(token.token_id)
    if kept == token.token_id:
        return token
    logprob = float(torch.log_softmax(raw_logits, dim=-1)[kept]) if token.logprob is not None else None
    return SampledToken(kept, logprob, token.top)


def _masked(logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
    """``logits`` with each constrained row's forbidden tokens at -inf (a copy: logprobs read the raw ones)."""
    masks, indices = [], []
    for i, row in enumerate(rows):
        mask = row.constraint.wait() if row.constraint is not None else None
        if mask is not None:
            masks.append(mask)
            indices.append(i)
    if not masks:
        return logits
    from quartet.services.engine.constraints import apply_token_bitmask  # xgrammar loads only when a grammar is used

    logits = logits.clone()
    # xgrammar reads mask row i for logits row i, so the masks must span the whole batch:
    # unconstrained rows get all bits set (and are skipped through ``indices`` anyway).
    batch_masks = torch.full((logits.shape[0], masks[0].shape[-1]), -1, dtype=masks[0].dtype)
    batch_masks[indices] = torch.stack(masks)
    apply_token_bitmask(logits, batch_masks, indices)
    return logits


def _sample_row(logits: torch.Tensor, raw_logits: torch.Tensor, row: SamplingRow) -> SampledToken:
    params = row.params
    logprob, top = None, ()
    if params.logprobs:
        raw = torch.log_softmax(raw_logits, dim=-1)
        top = _top(raw, params.top_logprobs)
    if _needs_shaping(params):
        logits = shape_logits(logits.clone(), params, row.prompt_ids, row.output_ids)
    if is_greedy(params):
        token = int(logits.argmax())
    else:
        probs = truncated_probs(logits, params)
        token = int(torch.multinomial(probs, 1, generator=row.generator))
    if params.logprobs:
        logprob = float(raw[token])
    return SampledToken(token, logprob, top)


def _top(logprobs: torch.Tensor, k: int) -> tuple[tuple[int, float], ...]:
    if k <= 0:
        return ()
    values, ids = torch.topk(logprobs, k)
    return tuple(zip(ids.tolist(), values.tolist()))


def shape_logits(
    logits: torch.Tensor, params: SamplingParams, prompt_ids: Sequence[int], output_ids: Sequence[int]
) -> torch.Tensor:
    """Apply logit_bias, the repetition penalty and the OpenAI presence/frequency penalties in place."""
    vocab = logits.shape[-1]
    if params.logit_bias:
        ids = torch.tensor(list(params.logit_bias), dtype=torch.long, device=logits.device)
        bias = torch.tensor(list(params.logit_bias.values()), dtype=logits.dtype, device=logits.device)
        logits.index_add_(0, ids, bias)
    if params.repetition_penalty is not None and params.repetition_penalty != 1.0:
        # CTRL's penalty (Keskar et al. 2019), as in HF: shrink positive logits, grow negative ones.
        seen = torch.tensor(list(prompt_ids) + list(output_ids), dtype=torch.long, device=logits.device).unique()
        chosen = logits[seen]
        penalty = params.repetition_penalty
        logits[seen] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    if (params.presence_penalty or params.frequency_penalty) and output_ids:
        counts = torch.bincount(torch.tensor(list(output_ids), dtype=torch.long, device=logits.device), minlength=vocab)
        counts = counts[:vocab].to(logits.dtype)
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0).to(logits.dtype)
    return logits


def truncated_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Softmax of logits / temperature after top-k, top-p (nucleus, Holtzman et al. 2020) and min-p."""
    temperature = 1.0 if params.temperature is None else params.temperature
    logits = logits / temperature
    if params.top_k:
        k = min(params.top_k, logits.shape[-1])
        kth = torch.topk(logits, k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p is not None and params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p: drop a token if the mass before it already does.
        drop = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) >= params.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    if params.min_p:
        probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
    return probs / probs.sum()
