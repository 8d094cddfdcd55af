"""Route on the real engine and the bundled model (greedy, so deterministic)."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import json_format
from jsonschema import Draft202012Validator
from quartet.router.v1 import router_pb2 as pb

from quartet.services.router.settings import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "schemas" / "router_decision.json").read_text())


@pytest.mark.parametrize(
    ("text", "operation", "term"),
    [
        ("Where is Boston?", "LOCATE", "Boston"),
        ("What's the weather in Paris?", "WEATHER", "Paris"),
        ("Is it raining in Seattle?", "WEATHER", "Seattle"),
        ("Can you help me write an email?", "CHAT", None),
    ],
)
async def test_route_gives_a_valid_decision(router, text, operation, term):
    response = await router.stub.Route(pb.RouteRequest(input=text))
    decision = json_format.MessageToDict(response.decision)
    assert decision == json.loads(response.decision_json)
    Draft202012Validator(SCHEMA).validate(decision)
    assert decision["Operation"] == operation
    if term is not None:
        assert decision["Term"] == term
    assert response.agent == "router"
    assert response.usage.prompt_tokens > 100  # the examples are in the prompt
    assert 0 < response.usage.completion_tokens <= 48


async def test_route_names_the_agent_explicitly(router):
    response = await router.stub.Route(pb.RouteRequest(input="Where is Boston?", agent="router", request_id="route-test-1"))
    assert json.loads(response.decision_json) == {"Operation": "LOCATE", "Term": "Boston"}


async def test_schema_constrained_router_decides_too(router):
    # router-schema names no grammar: the engine is given its JSON schema as the constraint.
    response = await router.stub.Route(pb.RouteRequest(input="Where is Boston?", agent="router-schema"))
    decision = json.loads(response.decision_json)
    Draft202012Validator(SCHEMA).validate(decision)
    assert decision["Operation"] == "LOCATE"


async def test_a_budget_no_decision_fits_is_the_agents_error(router):
    # router-cut may write 3 tokens: fewer than its grammar's shortest decision, so the engine refuses
    # the budget up front and the router blames the agent's setting, not the caller.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Route(pb.RouteRequest(input="Where is Boston?", agent="router-cut"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "agent 'router-cut' cannot decide within its generation.max_tokens (3)" in caught.value.details()
    assert "too few for the requested output format" in caught.value.details()


@pytest.mark.parametrize(
    ("request_", "code", "text"),
    [
        (pb.RouteRequest(input=""), grpc.StatusCode.INVALID_ARGUMENT, "input is required"),
        (pb.RouteRequest(input="   \n"), grpc.StatusCode.INVALID_ARGUMENT, "input is required"),
        (pb.RouteRequest(input="x" * 16_001), grpc.StatusCode.INVALID_ARGUMENT, "the limit is 16000"),
        (pb.RouteRequest(input="hi", agent="nobody"), grpc.StatusCode.NOT_FOUND, "configured agents: router, chat, project"),
        (pb.RouteRequest(input="hi", agent="chat"), grpc.StatusCode.INVALID_ARGUMENT, "is a topic agent"),
    ],
    ids=["empty", "blank", "too-long", "unknown-agent", "topic-agent"],
)
async def test_route_rejects_bad_requests(router, request_, code, text):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Route(request_)
    assert caught.value.code() == code
    assert text in caught.value.details()
