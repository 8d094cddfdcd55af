"""schemathesis against the live gateway's own /openapi.json: every route, 0 5xx, 0 hangs.

schemathesis generates requests (valid and invalid, bodies, query and path parameters) from
the schema the gateway publishes; the real engine answers whatever is accepted, capped at 3
tokens (and /bench at 2 prompts of 3) so each example is quick. A bounded, derandomized
example count keeps the run the same each time and a few minutes long on CI's 2 cores.
Socket.IO is outside OpenAPI: its payloads are fuzzed in test_gateway_agents.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode


REQUEST_SECONDS = 30


@pytest.fixture(scope="module")
def gateway_schema(engine_address: str, gateway_server) -> Iterator[schemathesis.BaseSchema]:
    with gateway_server(
        engine_address, max_tokens_cap=3, request_timeout_seconds=REQUEST_SECONDS, bench_max_count=2, bench_max_tokens=3
    ) as live:
        yield schemathesis.openapi.from_url(f"{live.url}/openapi.json")


FUZZ = settings(
    max_examples=15, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


def test_no_route_answers_5xx_or_hangs(gateway_schema: schemathesis.BaseSchema) -> None:
    # schemathesis's pytest plugin (from_fixture) does not run under pytest 9, so its strategies
    # are driven by hypothesis directly: one run per operation, valid and invalid cases.
    operations = [result.ok() for result in gateway_schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/chat/completions", "POST /v1/completions", "POST /v1/responses", "GET /v1/models"} <= labels, labels
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(timeout=REQUEST_SECONDS + 5)  # a timeout fails the example: a hang
                event(f"{case.method} {case.path}: {response.status_code}")
                assert response.status_code < 500, (case.method, case.path, case.body, response.status_code, response.text[:300])
                if response.status_code >= 400:  # every refusal in OpenAI's shape, saying what was wrong
                    assert response.json()["error"]["message"], response.text[:300]

            try:
                check()
            except Unsatisfiable:
                # An operation with nothing to get wrong (GET /healthz has no parameters) has no invalid cases.
                assert mode is GenerationMode.NEGATIVE, f"{operation.method} {operation.path}"
