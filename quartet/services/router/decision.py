"""Turn a router model's raw output into a validated decision, or say precisely why not.

The output is accepted only if it holds one JSON object that fits the agent's
schema; text around the object (a code fence, a trailing remark) is tolerated,
because the model is not yet grammar-constrained, but free text never passes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from quartet.services.common.errors import FailedPrecondition

_DECODER = json.JSONDecoder()
MAX_PROBLEM_CHARS = 300


class DecisionError(FailedPrecondition):
    """The model's output is not a decision; the message says what is wrong with it."""


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``; DecisionError if there is none."""
    start = text.find("{")
    if start < 0:
        raise DecisionError(f"the router model produced no JSON object ({len(text)} characters of text, no '{{')")
    first_problem = ""
    while start >= 0:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as error:
            first_problem = first_problem or f"{error.msg} at character {error.pos}"
        else:
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    raise DecisionError(f"the router model's output holds no complete JSON object: {first_problem}")


def validate_decision(value: Mapping[str, Any], schema: Mapping[str, Any], schema_id: str) -> dict[str, Any]:
    """Check ``value`` against ``schema``; DecisionError names the first failing path."""
    problem = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if problem is not None:
        path = "/".join(str(p) for p in problem.absolute_path) or "(the object)"
        message = problem.message
        if len(message) > MAX_PROBLEM_CHARS:
            message = message[:MAX_PROBLEM_CHARS] + "..."
        raise DecisionError(f"the router model's decision does not fit schema {schema_id!r}: at {path}: {message}")
    return dict(value)


def parse_decision(text: str, schema: Mapping[str, Any], schema_id: str, *, truncated: bool = False) -> dict[str, Any]:
    """Extract and validate; ``truncated`` (output hit max_tokens) is added to any error as a hint."""
    try:
        return validate_decision(extract_json_object(text), schema, schema_id)
    except DecisionError as error:
        if truncated:
            raise DecisionError(f"{error.message} (the output was cut at max_tokens; raise the agent's max_tokens)") from None
        raise
