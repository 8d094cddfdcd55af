"""``POST /v1/responses`` through the official ``openai`` SDK (sync and async) and raw HTTP, on the real engine.

These run on the shared gateway, which has no memory service: storing is off
(its tests are in test_gateway_responses_store.py).
"""

from __future__ import annotations

import httpx
import openai
import pytest
from quartet.engine.v1 import engine_pb2

from tests.gateway.live import EngineProbe

QUESTION = "What is the capital of France?"
SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


def counted(probe: EngineProbe, *messages: engine_pb2.ChatMessage) -> int:
    request = engine_pb2.CountTokensRequest(chat=engine_pb2.ChatInput(messages=list(messages)))
    return probe.stub.CountTokens(request, timeout=10).num_tokens


def test_sync_response(client: openai.OpenAI, model_id: str) -> None:
    response = client.responses.create(model=model_id, input=QUESTION, temperature=0, max_output_tokens=16)
    assert response.id.startswith("resp_") and response.object == "response" and response.model == model_id
    assert response.status == "completed" and response.error is None and response.store is False
    assert "Paris" in response.output_text
    message = response.output[0]
    assert (message.type, message.role, message.status) == ("message", "assistant", "completed")
    assert message.id.startswith("msg_") and message.content[0].type == "output_text"
    usage = response.usage
    assert usage.input_tokens > 5 and 0 < usage.output_tokens <= 16
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert response.completed_at >= response.created_at


def test_instructions_and_items_reach_the_engine(client: openai.OpenAI, model_id: str, engine_probe: EngineProbe) -> None:
    plain = client.responses.create(model=model_id, input=QUESTION, instructions="Answer in one word.", max_output_tokens=2)
    assert plain.instructions == "Answer in one word."
    assert plain.usage.input_tokens == counted(
        engine_probe,
        engine_pb2.ChatMessage(role="system", content="Answer in one word."),
        engine_pb2.ChatMessage(role="user", content=QUESTION),
    )
    items = [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Add 2"}, {"type": "input_text", "text": "and 3."}]},
        {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": '{"a": 2, "b": 3}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "5"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It is 5.", "annotations": []}]},
        {"role": "user", "content": "Thanks!"},
    ]
    response = client.responses.create(model=model_id, input=items, max_output_tokens=2)
    expected = counted(
        engine_probe,
        engine_pb2.ChatMessage(role="developer", content="Be brief."),
        engine_pb2.ChatMessage(role="user", content="Add 2\nand 3."),
        engine_pb2.ChatMessage(role="assistant", tool_calls=[engine_pb2.ToolCall(id="call_1", name="add", arguments='{"a": 2, "b": 3}')]),
        engine_pb2.ChatMessage(role="tool", content="5", tool_call_id="call_1"),
        engine_pb2.ChatMessage(role="assistant", content="It is 5."),
        engine_pb2.ChatMessage(role="user", content="Thanks!"),
    )
    assert response.usage.input_tokens == expected, "the reasoning item is left out, everything else is fed"


def test_sync_stream_follows_the_documented_sequence(client: openai.OpenAI, model_id: str) -> None:
    whole = client.responses.create(model=model_id, input=QUESTION, temperature=0, max_output_tokens=12)
    events = list(client.responses.create(model=model_id, input=QUESTION, temperature=0, max_output_tokens=12, stream=True))
    kinds = [event.type for event in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 1
    final = "response.completed" if whole.status == "completed" else "response.incomplete"
    assert kinds == SEQUENCE[:5] + ["response.output_text.delta"] * (deltas - 1) + SEQUENCE[5:] + [final]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    done = next(event for event in events if event.type == "response.output_text.done")
    assert text == done.text == whole.output_text == events[-1].response.output_text
    item_ids = {event.item_id for event in events if hasattr(event, "item_id")}
    assert item_ids == {events[2].item.id}
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens


async def test_async_response_and_stream(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    response = await async_client.responses.create(model=model_id, input=QUESTION, temperature=0, max_output_tokens=12)
    assert "Paris" in response.output_text
    stream = await async_client.responses.create(model=model_id, input=QUESTION, temperature=0, max_output_tokens=12, stream=True)
    events = [event async for event in stream]
    assert events[-1].response.output_text == response.output_text


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI, model_id: str) -> None:
    response = client.responses.create(
        model=model_id, input="Write a long story about a dragon.", temperature=0, max_output_tokens=4
    )
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 4 and response.output[0].status == "incomplete"
    last = list(client.responses.create(model=model_id, input="Write a long story.", max_output_tokens=3, stream=True))[-1]
    assert last.type == "response.incomplete"


def test_output_logprobs(client: openai.OpenAI, model_id: str) -> None:
    response = client.responses.create(
        model=model_id,
        input=QUESTION,
        temperature=0,
        max_output_tokens=5,
        include=["message.output_text.logprobs"],
        top_logprobs=2,
    )
    logprobs = response.output[0].content[0].logprobs
    assert len(logprobs) == response.usage.output_tokens
    assert "".join(entry.token for entry in logprobs) == response.output_text
    assert all(len(entry.top_logprobs) == 2 and entry.logprob <= 0 for entry in logprobs)


def test_an_invalid_format_schema_is_400_with_the_compiler_message(client: openai.OpenAI, model_id: str) -> None:
    broken = {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model_id, input=QUESTION, text=broken, max_output_tokens=8)
    assert caught.value.body["param"] == "text.format" and "nonsense" in caught.value.message


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"tools": [{"type": "file_search", "vector_store_ids": []}]}, "tools[0].type"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0].type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": ""}, "input"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"background": True}, "background"),
        ({"messages": []}, "messages"),
    ],
)
def test_bad_requests_name_the_field(http: httpx.Client, model_id: str, patch: dict, param: str) -> None:
    reply = http.post("/v1/responses", json={"model": model_id, "input": QUESTION, "max_output_tokens": 2, **patch})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param, reply.json()


def test_stored_responses_need_the_memory_service(http: httpx.Client) -> None:
    for method in ("GET", "DELETE"):
        reply = http.request(method, "/v1/responses/resp_123")
        assert reply.status_code == 400 and "memory" in reply.json()["error"]["message"]
