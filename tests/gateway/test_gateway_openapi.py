"""``/openapi.json`` describes what the routes really accept: the schema and the server agree on bodies."""

from __future__ import annotations

import httpx
import jsonschema
import pytest
from pydantic import BaseModel

from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest
from quartet.services.gateway.schemas.completion_request import CompletionRequest
from quartet.services.gateway.schemas.responses_request import ResponsesRequest

BODIES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/responses": ResponsesRequest,
}


@pytest.fixture(scope="module")
def document(gateway_url: str) -> dict:
    reply = httpx.get(f"{gateway_url}/openapi.json", timeout=10)
    assert reply.status_code == 200
    return reply.json()


def resolve(document: dict, schema: dict) -> dict:
    name = schema["$ref"].rsplit("/", 1)[-1]
    return document["components"]["schemas"][name]


@pytest.mark.parametrize("path", sorted(BODIES))
def test_each_body_lists_the_model_fields_and_the_envelope(document: dict, path: str) -> None:
    model = BODIES[path]
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    choices = body["content"]["application/json"]["schema"]["oneOf"]
    schemas = [resolve(document, choice) for choice in choices]
    assert schemas[0]["title"] == model.__name__
    fields = {info.alias or name for name, info in model.model_fields.items()}
    assert set(schemas[0]["properties"]) == fields
    assert set(schemas[0]["required"]) == {name for name, info in model.model_fields.items() if info.is_required()}
    assert schemas[0]["additionalProperties"] is False, "unknown fields are refused, and the schema says so"
    envelope = schemas[1]
    assert set(envelope["properties"]) == {"encrypted"} and envelope["required"] == ["encrypted"]
    assert "Fernet" in envelope["description"]


@pytest.mark.parametrize("path", sorted(BODIES))
def test_answers_and_errors_are_documented(document: dict, path: str) -> None:
    responses = document["paths"][path]["post"]["responses"]
    answer = responses["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(answer)
    for status in ("400", "401", "429"):
        assert resolve(document, responses[status]["content"]["application/json"]["schema"])["title"] == "ErrorResponse"


def test_no_422_is_promised(document: dict) -> None:
    statuses = {status for operations in document["paths"].values() for op in operations.values() for status in op["responses"]}
    assert "422" not in statuses
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert {"/healthz", "/metrics", "/bench", "/v1/models", "/v1/models/{model_id}"} <= set(document["paths"])


def validator(document: dict, path: str) -> jsonschema.Validator:
    schema = {**document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]}
    schema["components"] = document["components"]
    return jsonschema.Draft202012Validator(schema)


CASES = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 2, "stop": ["x"]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temperature": "0"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "colour": "red"}),
    ("/v1/chat/completions", {"messages": "hi"}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 2}),
    ("/v1/completions", {"prompt": [[1, 2, 3]], "max_tokens": 2, "logprobs": 1}),
    ("/v1/completions", {"prompt": ["a", "b"], "max_tokens": 2, "echo": True}),
    ("/v1/completions", {"prompt": 5}),
    ("/v1/completions", {"prompt": "hi", "echo": "yes"}),
    ("/v1/completions", {"prompt": "hi", "logprobs": True}),
    ("/v1/completions", {"max_tokens": 2}),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 2}),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}], "max_output_tokens": 2}),
    ("/v1/responses", {"input": [{"role": "user", "content": 5}]}),
    ("/v1/responses", {"input": "hi", "temperature": "hot"}),
    ("/v1/responses", {"input": "hi", "text": {"format": {"type": "yaml"}}}),
]


@pytest.mark.parametrize(("path", "body"), CASES)
def test_the_schema_and_the_server_agree(document: dict, http: httpx.Client, model_id: str, path: str, body: dict) -> None:
    """Types and shapes: a body the schema rejects is a 400, one it accepts is answered."""
    full = {"model": model_id, **body}
    schema_accepts = validator(document, path).is_valid(full)
    reply = http.post(path, json=full)
    assert reply.status_code in (200, 400), reply.text
    assert (reply.status_code == 200) == schema_accepts, (reply.status_code, reply.text)
