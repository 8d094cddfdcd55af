"""Constrained output always closes within its token budget (constraints/closing.py), on the bundled tokenizer.

No model runs here: the sampler is replaced by an adversary that picks any token the
grammar allows, preferring ones that open structures or add digits. If the budget
logic holds against that, it holds against a model. Every output must parse, fit its
schema and stay within max_tokens.
"""

from __future__ import annotations

import json
import random

import jsonschema
import pytest
import torch
import xgrammar as xgr
from transformers import AutoTokenizer

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.constraints import ConstraintCompiler, GrammarKind, GrammarSpec
from quartet.services.engine.constraints.closing import EndingTokenizer, shortest_ending
from quartet.services.engine.constraints.compiler import NUMBER_BOUNDS, bounded_json_grammar
from quartet.services.engine.constraints.matcher import _only
from quartet.services.engine.model_cache import ensure_bundled_model

PRODUCT = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
}
NESTED = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "count": {"type": "integer"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"k": {"type": "integer"}, "v": {"type": "string"}, "ok": {"type": "boolean"}},
                "required": ["k", "v", "ok"],
            },
        },
        "note": {"type": ["string", "null"]},
    },
    "required": ["title", "count", "items"],
}
SCHEMAS = {
    "product": PRODUCT,
    "nested": NESTED,
    "any_object": {"type": "object"},
    "numbers": {"type": "array", "items": {"type": "number"}, "minItems": 3},
    "enum": {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"]},
}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ensure_bundled_model(quiet=True))


@pytest.fixture(scope="module")
def compiler(tokenizer):
    compiled = ConstraintCompiler.from_hf_tokenizer(
        tokenizer, vocab_size=len(tokenizer), stop_token_ids=[tokenizer.eos_token_id]
    )
    yield compiled
    compiled.close()


def _spec(schema: dict) -> GrammarSpec:
    return GrammarSpec(GrammarKind.JSON_SCHEMA, json.dumps(schema), "constraint.json_schema")


def _allowed(mask: torch.Tensor, vocab_size: int) -> list[int]:
    bits = ((mask.unsqueeze(-1).to(torch.int64) >> torch.arange(32)) & 1).flatten()[:vocab_size]
    return torch.nonzero(bits).flatten().tolist()


def test_xgrammar_still_writes_the_number_rules_we_bound() -> None:
    # Fails when an xgrammar upgrade renames or rewrites them: NUMBER_BOUNDS must follow.
    schema = {"type": "array", "prefixItems": [{"type": "number"}, {"type": "integer"}]}
    text = str(xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False))
    lines = {line.strip() for line in text.splitlines()}
    assert set(NUMBER_BOUNDS) <= lines
    bounded = bounded_json_grammar(json.dumps({"type": "number"}))
    assert not (set(NUMBER_BOUNDS) & {line.strip() for line in bounded.splitlines()})


@pytest.mark.parametrize(
    ("schema", "text", "accepted"),
    [
        ({"type": "number"}, "1" * 17, True),
        ({"type": "number"}, "1" * 18, False),
        ({"type": "number"}, "0." + "5" * 17, True),
        ({"type": "number"}, "0." + "5" * 18, False),
        ({"type": "number"}, "-1.5e308", True),
        ({"type": "number"}, "1e3081", False),
        ({"type": "integer"}, "9" * 16, True),
        ({"type": "integer"}, "9" * 17, False),
        ({"type": "object"}, '{"a": ' + "1" * 18 + "}", False),
    ],
)
def test_numbers_are_bounded_to_what_a_double_carries(compiler, schema, text, accepted) -> None:
    matcher = xgr.GrammarMatcher(compiler.compile(_spec(schema)))
    assert (matcher.accept_string(text) and matcher.is_completed()) is accepted


@pytest.mark.parametrize(
    ("prefix", "ending"),
    [
        ("", '{"name": "", "price": 0}'),
        ('{"name": "abc', '", "price": 0}'),
        ('{"name": "abc", "price": 12.5', "}"),
        ('{"name": "abc", "price": 1', "}"),
    ],
)
def test_shortest_ending_closes_a_schema(compiler, prefix, ending) -> None:
    matcher = xgr.GrammarMatcher(compiler.compile(_spec(PRODUCT)))
    assert matcher.accept_string(prefix) if prefix else True
    assert shortest_ending(matcher) == ending
    assert not matcher.is_completed() or prefix == ""  # the matcher itself did not move
    assert matcher.accept_string(ending) and matcher.is_completed()


def test_a_grammar_without_a_greedy_ending_has_none(compiler) -> None:
    # "a"s forever never reach the "b" this regex needs (greedy tries "a" first): no ending, nothing forced.
    matcher = xgr.GrammarMatcher(compiler.compile(GrammarSpec(GrammarKind.REGEX, "a+b")))
    assert matcher.accept_string("a")
    assert shortest_ending(matcher) is None


def test_endings_are_spelt_with_ordinary_tokens(tokenizer) -> None:
    vocab = [tokenizer.convert_tokens_to_string([t]).encode() for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    endings = EndingTokenizer(vocab, excluded_ids=tokenizer.all_special_ids)
    text = '<|im_end|>", "price": 0}'
    ids = endings.encode(text)
    assert ids is not None and tokenizer.decode(ids) == text
    assert not set(ids) & set(tokenizer.all_special_ids)
    assert EndingTokenizer([b"a"]).encode("ab") is None


@pytest.mark.parametrize("token_id", [0, 5, 31, 32, 63, 49151])
def test_a_forced_mask_allows_one_token(token_id: int) -> None:
    assert _allowed(_only(token_id, 49152), 49152) == [token_id]


def test_a_budget_below_the_shortest_output_is_refused(compiler, tokenizer) -> None:
    with pytest.raises(InvalidArgument) as caught:
        compiler.new_constraint(_spec(PRODUCT), stop_token_ids=[tokenizer.eos_token_id], budget=3)
    assert caught.value.field == "max_tokens"
    assert "3 is too few" in caught.value.message and "takes 10 tokens" in caught.value.message


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_an_adversary_cannot_make_the_output_unclosed(compiler, tokenizer, name: str) -> None:
    schema = SCHEMAS[name]
    eos = tokenizer.eos_token_id
    vocab_size = compiler.vocab_size
    openers = {i for i in range(len(tokenizer)) if any(c in tokenizer.decode([i]) for c in '{["0123456789')}
    closed = runs = 0
    for seed in range(30):
        rng = random.Random(seed)
        budget = rng.randint(4, 70)
        try:
            constraint = compiler.new_constraint(_spec(schema), stop_token_ids=[eos], budget=budget)
        except InvalidArgument:
            continue  # too few tokens for any valid output: refused up front
        runs += 1
        out: list[int] = []
        while len(out) < budget:
            allowed = _allowed(constraint.wait(), vocab_size)
            opening = [t for t in allowed if t in openers]
            token = rng.choice(opening) if opening and rng.random() < 0.8 else rng.choice(allowed)
            token = constraint.vet(token)
            assert token in allowed or constraint.was_closed
            if token == eos:
                break
            out.append(token)
            assert constraint.accept(token)
        text = tokenizer.decode(out)
        value = json.loads(text)  # the point: it always parses
        jsonschema.validate(value, schema)
        assert len(out) <= budget
        assert constraint.is_closed == constraint.was_closed  # a forced ending is always written to its end
        closed += constraint.was_closed
    assert runs >= 20 and closed > 0  # the budget bit in some runs: the forcing path ran
