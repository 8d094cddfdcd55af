"""Stored responses end to end: the gateway, a real memory server over a real SQLite file, the real engine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from quartet.engine.v1 import engine_pb2

from tests.gateway.live import EngineProbe

NAME = "My name is Ada. Please remember it."


@pytest.fixture(scope="module")
def memory_address(tmp_path_factory: pytest.TempPathFactory, hosted, memory_server) -> Iterator[str]:
    path: Path = tmp_path_factory.mktemp("memory") / "memory.sqlite3"
    with hosted(memory_server(path), "memory-server") as served:
        yield served.address


@pytest.fixture(scope="module")
def stored_url(engine_address: str, memory_address: str, gateway_server) -> Iterator[str]:
    with gateway_server(engine_address, memory_address=memory_address) as live:
        yield live.url


@pytest.fixture()
def sdk(stored_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stored_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_stored_by_default_retrieved_and_deleted(sdk: openai.OpenAI, model_id: str) -> None:
    response = sdk.responses.create(model=model_id, input="What is the capital of France?", temperature=0, max_output_tokens=8)
    assert response.store is True
    again = sdk.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()
    sdk.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(response.id)


def test_store_false_keeps_nothing(sdk: openai.OpenAI, model_id: str) -> None:
    response = sdk.responses.create(model=model_id, input="Hi", max_output_tokens=2, store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)


def test_previous_response_id_continues_the_conversation(sdk: openai.OpenAI, model_id: str, engine_probe: EngineProbe) -> None:
    first = sdk.responses.create(model=model_id, input=NAME, instructions="Be kind.", temperature=0, max_output_tokens=8)
    second = sdk.responses.create(
        model=model_id, input="What is my name?", previous_response_id=first.id, temperature=0, max_output_tokens=8
    )
    assert second.previous_response_id == first.id
    # The earlier turn and its answer are fed again; the earlier instructions are not (as OpenAI does).
    chat = engine_pb2.ChatInput(
        messages=[
            engine_pb2.ChatMessage(role="user", content=NAME),
            engine_pb2.ChatMessage(role="assistant", content=first.output_text),
            engine_pb2.ChatMessage(role="user", content="What is my name?"),
        ]
    )
    expected = engine_probe.stub.CountTokens(engine_pb2.CountTokensRequest(chat=chat), timeout=10).num_tokens
    assert second.usage.input_tokens == expected
    third = sdk.responses.create(model=model_id, input="Thanks.", previous_response_id=second.id, max_output_tokens=2)
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens, "the whole chain is carried"


def test_a_streamed_response_is_retrievable_when_it_completes(sdk: openai.OpenAI, model_id: str) -> None:
    events = list(sdk.responses.create(model=model_id, input="Hi", temperature=0, max_output_tokens=4, stream=True))
    final = events[-1].response
    assert final.store is True
    assert sdk.responses.retrieve(final.id).output_text == final.output_text


async def test_async_retrieve_and_delete(stored_url: str, model_id: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{stored_url}/v1", api_key="unused", max_retries=0) as client:
        response = await client.responses.create(model=model_id, input="Hi", max_output_tokens=2)
        assert (await client.responses.retrieve(response.id)).id == response.id
        await client.responses.delete(response.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response.id)


def test_an_unknown_previous_response_is_404_naming_it(stored_url: str, model_id: str) -> None:
    reply = httpx.post(
        f"{stored_url}/v1/responses",
        json={"model": model_id, "input": "Hi", "previous_response_id": "resp_nothing"},
        timeout=30,
    )
    assert reply.status_code == 404 and reply.json()["error"]["param"] == "previous_response_id"


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_memory_down_fails_only_an_explicit_store(engine_address: str, model_id: str, gateway_server) -> None:
    with gateway_server(engine_address, memory_address=_dead_address()) as live:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=60)
        answered = client.responses.create(model=model_id, input="Hi", max_output_tokens=2)
        assert answered.store is False and answered.output_text is not None, "storing by default gives way"
        with pytest.raises(openai.InternalServerError) as info:
            client.responses.create(model=model_id, input="Hi", max_output_tokens=2, store=True)
        assert info.value.status_code == 503 and "memory" in info.value.message


def test_a_stored_call_is_answered_through_previous_response_id(sdk: openai.OpenAI, model_id: str) -> None:
    """The usual tool loop: the stored function_call comes back as history; only its output is sent."""
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}}
    first = sdk.responses.create(
        model=model_id, input="Weather in Paris?", tools=[tool], tool_choice="required", temperature=0, max_output_tokens=40
    )
    call = first.output[0]
    assert call.type == "function_call"
    assert sdk.responses.retrieve(first.id).output[0].model_dump() == call.model_dump()

    output = {"type": "function_call_output", "call_id": call.call_id, "output": "18 C, light rain"}
    stored = sdk.responses.create(
        model=model_id, previous_response_id=first.id, input=[output], tools=[tool], temperature=0, max_output_tokens=8
    )
    explicit_items = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        output,
    ]
    explicit = sdk.responses.create(model=model_id, input=explicit_items, tools=[tool], store=False, temperature=0, max_output_tokens=8)
    # The same prompt either way: the stored call is part of the history, rendered as the model wrote it.
    assert stored.usage.input_tokens == explicit.usage.input_tokens > first.usage.input_tokens
    assert stored.output_text == explicit.output_text
