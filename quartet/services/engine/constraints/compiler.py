"""Compile grammar specs against one tokenizer with xgrammar, behind an LRU cache.

xgrammar (Dong et al. 2024, "XGrammar: Flexible and Efficient Structured
Generation") precomputes, per grammar and vocabulary, which tokens each
grammar state allows, so a step's bitmask costs microseconds. Compiling is the
expensive part (milliseconds; a schema with a long ``maxLength`` string takes
seconds), so compiled grammars are kept in an LRU keyed by the spec and the
tokenizer's fingerprint. xgrammar's own cache is switched off so this one is the
only one, bounded and observable.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import xgrammar as xgr

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.constraints.closing import EndingTokenizer
from quartet.services.engine.constraints.matcher import SequenceConstraint
from quartet.services.engine.constraints.spec import GrammarKind, GrammarSpec

log = logging.getLogger(__name__)

#: Compiled grammars kept per compiler.
DEFAULT_CACHE_SIZE = 128
# xgrammar's C++ errors start with "[hh:mm:ss] /path/file.cc:123: " and sometimes a failed check.
_ERROR_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Check failed: \(.*?\) is false:\s*)?")

# JSON numbers bounded to what a double carries: 17 significant digits in the integer part and in the
# fraction, three exponent digits (1e308 is the largest double), integers to 16 digits (2**53 has 16).
# Unbounded, a small model can write digits until its budget runs out. These are xgrammar's rules
# for plain "number" and "integer" (and for every number of a json_object), rewritten line by line;
# tests/engine/test_engine_constraints_closing.py fails if xgrammar ever writes them differently.
NUMBER_BOUNDS = {
    'basic_integer ::= (("0") | (basic_integer_1 [1-9] [0-9]*))': 'basic_integer ::= (("0") | (basic_integer_1 [1-9] [0-9]{0, 15}))',
    'basic_number_2 ::= (("0") | ([1-9] [0-9]*))': 'basic_number_2 ::= (("0") | ([1-9] [0-9]{0, 16}))',
    'basic_number_3 ::= ("" | ("." basic_number_digits{1, -1}))': 'basic_number_3 ::= ("" | ("." basic_number_digits{1, 17}))',
    'basic_number_5 ::= ("" | ([eE] basic_number_4 basic_number_digits{1, -1}))': (
        'basic_number_5 ::= ("" | ([eE] basic_number_4 basic_number_digits{1, 3}))'
    ),
}


def bounded_json_grammar(schema: str) -> str:
    """The EBNF of ``schema`` (fixed separators) with JSON numbers bounded by ``NUMBER_BOUNDS``."""
    # Fixed separators (", " and ": "): free whitespace lets small models loop on newlines.
    text = str(xgr.Grammar.from_json_schema(schema, any_whitespace=False))
    return "\n".join(NUMBER_BOUNDS.get(line.strip(), line) for line in text.splitlines())


class GrammarCache:
    """A thread-safe LRU of compiled grammars with hit and miss counts."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, GrammarSpec], xgr.CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, GrammarSpec]) -> xgr.CompiledGrammar | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, GrammarSpec], value: xgr.CompiledGrammar) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class ConstraintCompiler:
    """Grammars for one tokenizer, and the per-sequence matchers that walk them."""

    def __init__(
        self,
        tokenizer_info: xgr.TokenizerInfo,
        fingerprint: str,
        *,
        cache: GrammarCache | None = None,
        mask_threads: int = 1,
        excluded_ending_ids: Sequence[int] = (),
    ) -> None:
        self.tokenizer_info = tokenizer_info
        self.fingerprint = fingerprint
        self.vocab_size = tokenizer_info.vocab_size
        # Endings are spelt with ordinary tokens only: never a special or stop token.
        self.endings = EndingTokenizer(
            tokenizer_info.decoded_vocab, excluded_ids=[*excluded_ending_ids, *tokenizer_info.stop_token_ids]
        )
        self.cache = cache or GrammarCache()
        self._compiler = xgr.GrammarCompiler(tokenizer_info, max_threads=1, cache_enabled=False)
        # Bitmasks are filled here while the model's forward pass runs on the engine thread.
        self._executor = ThreadPoolExecutor(max_workers=mask_threads, thread_name_prefix="grammar-mask")

    @classmethod
    def from_hf_tokenizer(cls, hf_tokenizer, *, vocab_size: int, stop_token_ids: Sequence[int]) -> ConstraintCompiler:
        """For a Hugging Face tokenizer; ``vocab_size`` is the model's (logits may be wider than the vocabulary)."""
        info = xgr.TokenizerInfo.from_huggingface(
            hf_tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
        )
        vocab = hf_tokenizer.get_vocab()
        digest = hashlib.sha256(repr(sorted(vocab.items())).encode()).hexdigest()[:16]
        special = list(getattr(hf_tokenizer, "all_special_ids", ()) or ())
        return cls(info, f"hf:{digest}:{vocab_size}:{sorted(stop_token_ids)}", excluded_ending_ids=special)

    @classmethod
    def from_token_bytes(
        cls, token_bytes: Sequence[bytes], *, vocab_size: int, stop_token_ids: Sequence[int], name: str
    ) -> ConstraintCompiler:
        """For a raw byte vocabulary (tiktoken-style); special tokens are given as empty bytes."""
        info = xgr.TokenizerInfo(
            list(token_bytes), xgr.VocabType.RAW, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
        )
        return cls(info, f"raw:{name}:{vocab_size}:{sorted(stop_token_ids)}")

    def compile(self, spec: GrammarSpec) -> xgr.CompiledGrammar:
        """The compiled grammar (cached); InvalidArgument carries the compiler's message."""
        key = (self.fingerprint, spec)
        compiled = self.cache.get(key)
        if compiled is not None:
            return compiled
        try:
            if spec.kind is GrammarKind.JSON_SCHEMA:
                compiled = self._compiler.compile_grammar(bounded_json_grammar(spec.source), root_rule_name="root")
            elif spec.kind is GrammarKind.REGEX:
                compiled = self._compiler.compile_regex(spec.source)
            else:
                compiled = self._compiler.compile_grammar(spec.source, root_rule_name="root")
        except RuntimeError as error:
            raise InvalidArgument(
                f"{spec.origin}: the grammar compiler rejected it: {compiler_message(error)}", field=spec.origin
            ) from error
        self.cache.put(key, compiled)
        return compiled

    def new_constraint(
        self, spec: GrammarSpec, *, stop_token_ids: Sequence[int], budget: int | None = None
    ) -> SequenceConstraint:
        """A fresh matcher at the grammar's start; its first bitmask starts filling at once.

        With a ``budget`` (the sequence's max_tokens) the output closes within it; a budget below the
        shortest output the grammar allows is an InvalidArgument naming max_tokens.
        """
        constraint = SequenceConstraint(
            self.compile(spec),
            vocab_size=self.vocab_size,
            stop_token_ids=stop_token_ids,
            executor=self._executor,
            endings=self.endings if budget is not None else None,
            budget=budget,
        )
        needed = constraint.ending_length
        if budget is not None and needed is not None and needed > budget:
            constraint.close()
            raise InvalidArgument(
                f"max_tokens: {budget} is too few for the requested output format, whose shortest valid output "
                f"takes {needed} tokens; allow at least {needed}",
                field="max_tokens",
            )
        return constraint

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def compiler_message(error: BaseException) -> str:
    """xgrammar's message without its C++ source location."""
    text = str(error).strip()
    first, _, rest = text.partition("\n")
    first = _ERROR_PREFIX.sub("", first)
    return (first + ("\n" + rest.strip() if rest.strip() else "")).strip()
