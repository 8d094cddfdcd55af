"""Grammar constraints without the model: specs, the compiler and its cache, matchers, the sampler's mask.

A toy byte vocabulary keeps every mask small enough to read: ids are
0 "<eos>" (the stop token), then single characters and a few merges.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.constraints import (
    ConstraintCompiler,
    GrammarCache,
    GrammarKind,
    GrammarSpec,
    SequenceConstraint,
    ToolCallFormat,
    grammar_spec,
)
from quartet.services.engine.api.request import Constraint, SamplingParams, Tool
from quartet.services.engine.runner.sampler import SamplingRow, new_generator, sample

VOCAB = [
    b"<eos>",
    b"a",
    b"b",
    b"ab",
    b"{",
    b"}",
    b'"',
    b"x",
    b":",
    b" ",
    b",",
    b"1",
    b"2",
    b"yes",
    b"no",
    b"y",
    b"e",
    b"s",
    b"n",
    b"o",
]
ID = {token.decode(): i for i, token in enumerate(VOCAB)}
EOS = 0


@pytest.fixture(scope="module")
def compiler() -> ConstraintCompiler:
    toy = ConstraintCompiler.from_token_bytes(VOCAB, vocab_size=len(VOCAB), stop_token_ids=[EOS], name="toy")
    yield toy
    toy.close()


def allowed(constraint: SequenceConstraint) -> set[str]:
    mask = constraint.wait()
    assert mask is not None
    bits = ((mask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1).flatten()[: len(VOCAB)]
    return {VOCAB[i].decode() for i in bits.nonzero().flatten().tolist()}


def test_spec_maps_each_constraint_kind() -> None:
    tools = (Tool("get_weather", "", json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})),)
    env = ToolCallFormat.JSON_ENVELOPE
    assert grammar_spec(Constraint("json_object"), (), env) == GrammarSpec(
        GrammarKind.JSON_SCHEMA, '{"type": "object"}'
    )
    assert grammar_spec(Constraint("regex", "a+"), (), env).kind is GrammarKind.REGEX
    choice = grammar_spec(Constraint("choice", ('say "hi"', "b\\c", "b\\c")), (), env)
    assert choice.source == 'root ::= "say \\"hi\\"" | "b\\\\c"'  # escaped, duplicates dropped
    envelope = json.loads(grammar_spec(Constraint("tool_name", "get_weather"), tools, env).source)
    assert envelope["properties"]["name"] == {"const": "get_weather"}
    assert envelope["properties"]["arguments"]["properties"] == {"city": {"type": "string"}}
    arguments = json.loads(
        grammar_spec(Constraint("tool_name", "get_weather"), tools, ToolCallFormat.ARGUMENTS_ONLY).source
    )
    assert arguments == {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.mark.parametrize(
    "constraint,field",
    [
        (Constraint("json_schema", "{not json"), "constraint.json_schema"),
        (Constraint("json_schema", "[1, 2]"), "constraint.json_schema"),
        (Constraint("choice", ()), "constraint.choice"),
        (Constraint("tool_name", "missing"), "constraint.tool_name"),
        (Constraint("regex", ""), "constraint.regex"),
    ],
)
def test_spec_rejects_bad_values_naming_the_field(constraint: Constraint, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        grammar_spec(constraint, (Tool("other"),), ToolCallFormat.JSON_ENVELOPE)
    assert caught.value.field == field


def test_regex_mask_walks_the_language(compiler: ConstraintCompiler) -> None:
    constraint = compiler.new_constraint(GrammarSpec(GrammarKind.REGEX, "ab|b"), stop_token_ids=[EOS])
    assert allowed(constraint) == {"a", "b", "ab"}
    assert constraint.accept(ID["a"])
    assert allowed(constraint) == {"b"}
    assert constraint.accept(ID["b"])
    assert allowed(constraint) == {"<eos>"}  # complete: only the stop token
    assert constraint.accept(EOS) and constraint.is_terminated


def test_choice_grammar_allows_exactly_the_choices(compiler: ConstraintCompiler) -> None:
    spec = grammar_spec(Constraint("choice", ("yes", "no")), (), ToolCallFormat.JSON_ENVELOPE)
    constraint = compiler.new_constraint(spec, stop_token_ids=[EOS])
    assert allowed(constraint) == {"yes", "no", "y", "n"}
    constraint.accept(ID["y"])
    assert allowed(constraint) == {"e"}


def test_refused_token_stops_constraining_instead_of_failing(compiler: ConstraintCompiler) -> None:
    constraint = compiler.new_constraint(GrammarSpec(GrammarKind.REGEX, "ab"), stop_token_ids=[EOS])
    assert not constraint.accept(ID["x"])
    assert constraint.is_failed and constraint.wait() is None


def test_compiled_grammars_are_cached_by_spec_and_evicted_least_recent_first() -> None:
    cache = GrammarCache(capacity=2)
    toy = ConstraintCompiler.from_token_bytes(
        VOCAB,
        vocab_size=len(VOCAB),
        stop_token_ids=[EOS],
        name="toy",
    )
    toy.cache = cache
    specs = [GrammarSpec(GrammarKind.REGEX, r) for r in ("a", "b", "ab")]
    first = toy.compile(specs[0])
    assert toy.compile(specs[0]) is first and (cache.hits, cache.misses) == (1, 1)
    # The origin names a field for errors only: the same grammar from another field is a hit.
    assert toy.compile(GrammarSpec(GrammarKind.REGEX, "a", origin="constraint.choice")) is first
    toy.compile(specs[1])
    toy.compile(specs[2])  # evicts "a", the least recently used
    assert len(cache) == 2
    misses = cache.misses
    assert toy.compile(specs[0]) is not first and cache.misses == misses + 1
    toy.close()


def test_cache_key_includes_the_tokenizer() -> None:
    cache = GrammarCache()
    one = ConstraintCompiler.from_token_bytes(VOCAB, vocab_size=len(VOCAB), stop_token_ids=[EOS], name="one")
    two = ConstraintCompiler.from_token_bytes(VOCAB[:10], vocab_size=10, stop_token_ids=[EOS], name="two")
    one.cache = two.cache = cache
    spec = GrammarSpec(GrammarKind.REGEX, "a")
    assert one.compile(spec) is not two.compile(spec)
    assert cache.misses == 2
    one.close()
    two.close()


@pytest.mark.parametrize(
    "spec,words",
    [
        (GrammarSpec(GrammarKind.REGEX, "(ab", "constraint.regex"), "parenthesis"),
        (GrammarSpec(GrammarKind.EBNF, 'root ::= "a" | b', "constraint.grammar"), 'Rule "b" is not defined'),
        (GrammarSpec(GrammarKind.JSON_SCHEMA, '{"type": "nonsense"}', "constraint.json_schema"), "Unsupported type"),
    ],
)
def test_invalid_grammar_is_invalid_argument_with_the_compilers_message(
    compiler: ConstraintCompiler, spec: GrammarSpec, words: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        compiler.compile(spec)
    assert caught.value.field == spec.origin
    assert words in caught.value.message
    assert ".cc:" not in caught.value.message  # the C++ source location is stripped


def test_bitmask_is_filled_on_the_worker_while_the_caller_runs(compiler: ConstraintCompiler) -> None:
    threads: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mask-test") as executor:
        constraint = SequenceConstraint(
            compiler.compile(GrammarSpec(GrammarKind.REGEX, "a+")),
            vocab_size=len(VOCAB),
            stop_token_ids=[EOS],
            executor=executor,
        )
        original = constraint._fill

        def recording_fill():
            import threading

            threads.append(threading.current_thread().name)
            return original()

        constraint._fill = recording_fill  # type: ignore[method-assign]
        constraint.accept(ID["a"])  # schedules the next mask at once
        assert allowed(constraint) == {"a", "<eos>"}
    assert threads and all(name.startswith("mask-test") for name in threads)


def test_sampler_never_picks_a_forbidden_token_and_reports_raw_logprobs(compiler: ConstraintCompiler) -> None:
    logits = torch.zeros(2, len(VOCAB))
    logits[:, ID["x"]] = 10.0  # the model's favourite is forbidden
    logits[:, ID["b"]] = 2.0
    logits[:, ID["a"]] = 1.0
    raw = torch.log_softmax(logits[0], -1)

    def row(params: SamplingParams, seed: int) -> SamplingRow:
        spec = GrammarSpec(GrammarKind.REGEX, "(a|b)+")
        return SamplingRow(params, new_generator(seed, 0), [], [], compiler.new_constraint(spec, stop_token_ids=[EOS]))

    greedy, sampled = sample(
        logits,
        [row(SamplingParams(temperature=0, logprobs=True, top_logprobs=1), 0), row(SamplingParams(temperature=1.0), 1)],
    )
    assert greedy.token_id == ID["b"]
    assert greedy.logprob == pytest.approx(float(raw[ID["b"]]))
    assert greedy.top[0][0] == ID["x"]  # alternatives come from the unconstrained distribution
    assert sampled.token_id in (ID["a"], ID["b"])
    draws = {sample(logits, [row(SamplingParams(temperature=2.0), seed)])[0].token_id for seed in range(40)}
    assert draws <= {ID["a"], ID["b"], ID["ab"]} and len(draws) > 1


@pytest.mark.parametrize("constrained_row", [0, 1, 2])
def test_constrained_rows_anywhere_in_a_mixed_batch(compiler: ConstraintCompiler, constrained_row: int) -> None:
    # Regression: masks used to be stacked for the constrained rows only, while xgrammar
    # reads mask row i for logits row i, so a constrained sequence behind unconstrained ones
    # indexed past the masks and killed the engine's worker.
    logits = torch.zeros(3, len(VOCAB))
    logits[:, ID["x"]] = 10.0
    logits[:, ID["b"]] = 2.0
    greedy = SamplingParams(temperature=0)
    rows = [SamplingRow(greedy, new_generator(0, 0), [], []) for _ in range(3)]
    spec = GrammarSpec(GrammarKind.REGEX, "(a|b)+")
    rows[constrained_row] = SamplingRow(
        greedy, new_generator(0, 0), [], [], compiler.new_constraint(spec, stop_token_ids=[EOS])
    )
    picked = [token.token_id for token in sample(logits, rows)]
    assert picked == [ID["b"] if i == constrained_row else ID["x"] for i in range(3)]
