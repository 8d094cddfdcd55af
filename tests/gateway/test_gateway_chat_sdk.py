"""Chat Completions through the official ``openai`` SDK, sync and async, against the real engine."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from pydantic import BaseModel
from quartet.engine.v1 import engine_pb2

from tests.gateway.live import EngineProbe

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_sync_completion_answers_with_usage(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=32)
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == model_id
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 32
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sync_stream_matches_the_whole_answer(client: openai.OpenAI, model_id: str) -> None:
    whole = client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=24)
    chunks = list(
        client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=24, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.id == chunks[0].id and chunk.object == "chat.completion.chunk" for chunk in chunks)
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices[0].delta.content]
    assert len(pieces) > 1, "expected the answer in several pieces"
    assert "".join(pieces) == whole.choices[0].message.content
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices[0].finish_reason is not None and chunks[-1].usage is None


async def test_async_completion(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    completion = await async_client.chat.completions.create(
        model=model_id, messages=QUESTION, temperature=0, max_completion_tokens=32
    )
    assert "Paris" in completion.choices[0].message.content


async def test_async_stream_with_usage(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    stream = await async_client.chat.completions.create(
        model=model_id,
        messages=QUESTION,
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(chunk.usage is None for chunk in chunks[:-1])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
    assert "Paris" in text
    assert 0 < last.usage.completion_tokens <= 16
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_max_tokens_ends_with_length(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0,
        max_tokens=5,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5


def test_stop_string_cuts_the_answer(client: openai.OpenAI, model_id: str) -> None:
    free = client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=24)
    text = free.choices[0].message.content
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]
    cut = client.chat.completions.create(model=model_id, messages=QUESTION, temperature=0, max_tokens=24, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]


def test_seed_makes_sampling_reproducible(client: openai.OpenAI, model_id: str) -> None:
    def sample(seed: int) -> str:
        reply = client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": "Name a random animal and describe it."}],
            temperature=1.0,
            seed=seed,
            max_tokens=16,
        )
        return reply.choices[0].message.content

    assert sample(1234) == sample(1234)


def test_every_role_and_text_part_reaches_the_engine(client: openai.OpenAI, model_id: str, engine_probe: EngineProbe) -> None:
    conversation = [
        ("system", "You are a geography teacher."),
        ("developer", ["Answer in one sentence."]),
        ("user", "What is the capital of Italy?"),
        ("assistant", "Rome."),
        ("user", ["And of", "France?"]),
    ]
    messages = [
        {"role": role, "content": text if isinstance(text, str) else [{"type": "text", "text": t} for t in text]}
        for role, text in conversation
    ]
    completion = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=8)
    assert completion.choices[0].message.content
    # The engine counts the same conversation, parts joined by newlines, to the same number of tokens.
    expected = engine_pb2.ChatInput(
        messages=[
            engine_pb2.ChatMessage(role=role, content=text if isinstance(text, str) else "\n".join(text))
            for role, text in conversation
        ]
    )
    counted = engine_probe.stub.CountTokens(engine_pb2.CountTokensRequest(chat=expected), timeout=10)
    assert completion.usage.prompt_tokens == counted.num_tokens


def test_n_gives_several_choices_or_a_clear_400(client: openai.OpenAI, model_id: str) -> None:
    try:
        completion = client.chat.completions.create(
            model=model_id, messages=QUESTION, temperature=0.8, seed=3, n=2, max_tokens=8
        )
    except openai.BadRequestError as error:
        # The engine may not implement n > 1 yet; then its refusal must reach the client as is.
        assert "n" in error.message
        return
    assert sorted(choice.index for choice in completion.choices) == [0, 1]
    assert all(choice.message.content is not None for choice in completion.choices)


def test_logprobs_or_a_clear_400(client: openai.OpenAI, model_id: str) -> None:
    try:
        completion = client.chat.completions.create(
            model=model_id, messages=QUESTION, temperature=0, max_tokens=6, logprobs=True, top_logprobs=2
        )
    except openai.BadRequestError as error:
        assert "logprobs" in error.message
        return
    content = completion.choices[0].logprobs.content
    assert len(content) == completion.usage.completion_tokens
    assert all(len(entry.top_logprobs) == 2 and entry.logprob <= 0 for entry in content)
    assert "".join(entry.token for entry in content).startswith(completion.choices[0].message.content[:3])


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_not_found_listing_models(client: openai.OpenAI, model_id: str, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no/such-model", messages=QUESTION, stream=stream)
    assert model_id in info.value.message


async def test_concurrent_streams_each_complete(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    async def one(question: str) -> tuple[str, str | None]:
        stream = await async_client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=12, stream=True
        )
        text, finish = "", None
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        return text, finish

    questions = [f"What is {n} plus {n}?" for n in range(4)]
    results = await asyncio.gather(*(one(q) for q in questions))
    assert all(text and finish in ("stop", "length") for text, finish in results), results


class Capital(BaseModel):
    country: str
    capital: str


def test_structured_outputs_are_enforced(client: openai.OpenAI, model_id: str) -> None:
    """json_schema (parsed into a pydantic model) and json_object go to the engine as constraints."""
    parsed = client.chat.completions.parse(model=model_id, messages=QUESTION, response_format=Capital, temperature=0, max_tokens=200)
    assert parsed.choices[0].finish_reason == "stop"
    assert isinstance(parsed.choices[0].message.parsed, Capital)
    reply = client.chat.completions.create(
        model=model_id, messages=QUESTION, response_format={"type": "json_object"}, temperature=0, max_tokens=200, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in reply if chunk.choices)
    assert isinstance(json.loads(text), dict)


async def test_async_parse_into_a_pydantic_model(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    parsed = await async_client.chat.completions.parse(
        model=model_id, messages=QUESTION, response_format=Capital, temperature=0, max_tokens=200
    )
    assert isinstance(parsed.choices[0].message.parsed, Capital)


def test_an_invalid_response_schema_is_400_with_the_compiler_message(client: openai.OpenAI, model_id: str) -> None:
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=QUESTION, response_format=broken, max_tokens=8)
    assert caught.value.body["param"] == "response_format" and "nonsense" in caught.value.message
