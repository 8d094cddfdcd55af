"""Compile an agent's grammar or JSON schema at startup, so a broken one stops the router
with the compiler's own message instead of failing every request later.

The check uses llguidance (a Rust grammar engine with no torch dependency, so the
router image stays small); the engine compiles the same text with xgrammar when a
request arrives. Both read llama.cpp's GBNF and JSON Schema; tests/router compile
every shipped grammar with both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import llguidance


class GrammarError(ValueError):
    """The grammar or schema does not compile; the message is the compiler's."""


def _validate(kind: str, text: str) -> None:
    try:
        compiled = llguidance.grammar_from(kind, text)
    except ValueError as error:  # GBNF that cannot even be translated (undefined rule, syntax)
        raise GrammarError(str(error)) from None
    problem = llguidance.LLMatcher.validate_grammar(compiled)
    if problem:
        raise GrammarError(problem.strip())


def check_gbnf(text: str) -> None:
    """Raise GrammarError unless ``text`` is a GBNF grammar with a ``root`` rule that compiles."""
    if "root" not in text or "::=" not in text:
        raise GrammarError("a GBNF grammar needs rules written 'name ::= ...' and a rule named root")
    _validate("gbnf", text)


def check_json_schema(schema: Mapping[str, Any]) -> None:
    """Raise GrammarError unless the schema compiles into a grammar for generation."""
    _validate("json_schema", json.dumps(schema))
