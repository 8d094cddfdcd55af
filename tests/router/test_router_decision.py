"""Extraction and validation of router decisions, on literal outputs a small model produces."""

from __future__ import annotations

import json

import pytest

from quartet.services.router.decision import DecisionError, extract_json_object, parse_decision
from quartet.services.router.settings import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "schemas" / "router_decision.json").read_text())


def parse(text: str, **kw):
    return parse_decision(text, SCHEMA, "router_decision", **kw)


@pytest.mark.parametrize(
    "output",
    [
        '{"Operation": "LOCATE", "Term": "Boston"}',
        '  {"Operation":"LOCATE","Term":"Boston"}\n\nYou can find Boston in Massachusetts.',
        '```json\n{"Operation": "LOCATE", "Term": "Boston"}\n```',
        'Sure! {"Operation": "LOCATE", "Term": "Boston"}',
    ],
    ids=["clean", "trailing-chatter", "code-fence", "leading-text"],
)
def test_accepts_one_valid_object(output):
    assert parse(output) == {"Operation": "LOCATE", "Term": "Boston"}


def test_skips_braces_that_are_not_json():
    assert extract_json_object('use {braces} like {"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("Boston is the capital of Massachusetts.", "no JSON object"),
        ('"What\'s a joke about a cat?"', "no JSON object"),
        ('{"Operation": "LOC', "no complete JSON object"),
        ('{"Operation": "CHAT", "Term": "a joke"', "no complete JSON object"),
        ('{"Operation": "LOSER", "Term": "LISBON"}', "at Operation: 'LOSER' is not one of"),
        ('{"Operation": "LOCATE"}', "'Term' is a required property"),
        ('{"Operation": "CHAT", "Term": ""}', "at Term:"),
        ('{"Operation": "CHAT", "Term": "x", "Why": "y"}', "Additional properties are not allowed"),
        ('{"Operation": "LOCATE", "Term": 7}', "at Term: 7 is not of type 'string'"),
    ],
    ids=["free-text", "quoted-text", "truncated", "unclosed", "unknown-operation", "missing-term", "empty-term", "extra-key", "wrong-type"],
)
def test_rejects_with_a_precise_reason(output, problem):
    with pytest.raises(DecisionError) as caught:
        parse(output)
    assert problem in caught.value.message
    assert "router" in caught.value.message


def test_truncation_adds_a_hint():
    with pytest.raises(DecisionError, match="cut at max_tokens"):
        parse('{"Operation": "LOC', truncated=True)


def test_decision_error_is_failed_precondition():
    import grpc

    assert DecisionError("x").grpc_code == grpc.StatusCode.FAILED_PRECONDITION
