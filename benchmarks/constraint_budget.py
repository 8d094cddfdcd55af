"""What closing within the budget costs per constrained token (quartet/services/engine/constraints/closing.py).

The engine thread does, per constrained token: wait for the mask, sample, ``vet`` the
token (with a budget: fork the matcher, accept the token, walk the shortest ending),
``accept``. This walks several schemas with a seeded random token choice (the same
choices with and without a budget until the budget forces the ending) and prints the
host time per token of each part, without a model, on the bundled tokenizer.

    .venv/bin/python benchmarks/constraint_budget.py
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time

import torch
from transformers import AutoTokenizer

from quartet.services.engine.constraints import ConstraintCompiler, GrammarKind, GrammarSpec
from quartet.services.engine.model_cache import ensure_bundled_model

SCHEMAS = {
    "product": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
        "required": ["name", "price"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"k": {"type": "integer"}, "v": {"type": "string"}},
                    "required": ["k", "v"],
                },
            },
        },
        "required": ["title", "items"],
    },
    "any_object": {"type": "object"},
}


def _allowed(mask: torch.Tensor, vocab_size: int) -> list[int]:
    bits = ((mask.unsqueeze(-1).to(torch.int64) >> torch.arange(32)) & 1).flatten()[:vocab_size]
    return torch.nonzero(bits).flatten().tolist()


def walk(compiler: ConstraintCompiler, spec: GrammarSpec, eos: int, budget: int | None, seed: int) -> dict[str, list[float]]:
    """Per-token seconds of wait, vet and accept over one seeded walk of up to ``budget`` (or 64) tokens."""
    rng = random.Random(seed)
    constraint = compiler.new_constraint(spec, stop_token_ids=[eos], budget=budget)
    times: dict[str, list[float]] = {"wait": [], "vet": [], "accept": []}
    for _ in range(budget or 64):
        t0 = time.perf_counter()
        mask = constraint.wait()
        t1 = time.perf_counter()
        token = rng.choice(_allowed(mask, compiler.vocab_size))  # not timed: stands in for the sampler
        t2 = time.perf_counter()
        token = constraint.vet(token)
        t3 = time.perf_counter()
        if token == eos:
            break
        constraint.accept(token)
        t4 = time.perf_counter()
        times["wait"].append(t1 - t0)
        times["vet"].append(t3 - t2)
        times["accept"].append(t4 - t3)
    constraint.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=20)
    parser.add_argument("--budget", type=int, default=64)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(ensure_bundled_model(quiet=True))
    eos = tokenizer.eos_token_id
    compiler = ConstraintCompiler.from_hf_tokenizer(tokenizer, vocab_size=len(tokenizer), stop_token_ids=[eos])
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"torch threads {torch.get_num_threads()}, {args.walks} walks of up to {args.budget} tokens per schema")
    print(f"{'schema':<11} {'budget':>7} {'wait µs':>8} {'vet µs':>8} {'accept µs':>10} {'total µs':>9}")
    for name, schema in SCHEMAS.items():
        spec = GrammarSpec(GrammarKind.JSON_SCHEMA, json.dumps(schema))
        compiler.compile(spec)
        for budget in (None, args.budget):
            merged: dict[str, list[float]] = {"wait": [], "vet": [], "accept": []}
            for seed in range(args.walks):
                for part, values in walk(compiler, spec, eos, budget, seed).items():
                    merged[part].extend(values)
            med = {part: statistics.median(values) * 1e6 for part, values in merged.items()}
            label = "off" if budget is None else str(budget)
            print(f"{name:<11} {label:>7} {med['wait']:8.1f} {med['vet']:8.1f} {med['accept']:10.1f} {sum(med.values()):9.1f}")
    compiler.close()


if __name__ == "__main__":
    main()
