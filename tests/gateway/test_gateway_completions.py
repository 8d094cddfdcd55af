"""``POST /v1/completions`` through the official ``openai`` SDK (sync and async) and raw HTTP, on the real engine."""

from __future__ import annotations

import httpx
import openai
import pytest
from quartet.engine.v1 import engine_pb2

from tests.gateway.live import EngineProbe

PROMPT = "The capital of France is"
OTHER = "One, two, three,"


def greedy(client: openai.OpenAI, model_id: str, prompt, max_tokens: int = 6, **extra):
    return client.completions.create(model=model_id, prompt=prompt, temperature=0, max_tokens=max_tokens, **extra)


def test_sync_completion_answers_with_usage(client: openai.OpenAI, model_id: str) -> None:
    completion = greedy(client, model_id, PROMPT, max_tokens=8)
    assert completion.id.startswith("cmpl-") and completion.object == "text_completion"
    assert completion.model == model_id
    choice = completion.choices[0]
    assert "Paris" in choice.text and not choice.text.startswith(PROMPT)
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    usage = completion.usage
    assert usage.prompt_tokens >= 4 and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_default_max_tokens_is_sixteen(client: openai.OpenAI, model_id: str) -> None:
    completion = client.completions.create(
        model=model_id, prompt="Once upon a time", temperature=0, extra_body={"ignore_eos": True}
    )
    assert completion.usage.completion_tokens == 16
    assert completion.choices[0].finish_reason == "length"


def test_sync_stream_matches_the_whole_answer(client: openai.OpenAI, model_id: str) -> None:
    whole = greedy(client, model_id, PROMPT, max_tokens=10)
    chunks = list(greedy(client, model_id, PROMPT, max_tokens=10, stream=True))
    assert all(chunk.id == chunks[0].id and chunk.object == "text_completion" for chunk in chunks)
    assert len([chunk for chunk in chunks if chunk.choices[0].text]) > 1, "expected several pieces"
    assert "".join(chunk.choices[0].text for chunk in chunks) == whole.choices[0].text
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is None


async def test_async_stream_with_usage(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    stream = await async_client.completions.create(
        model=model_id, prompt=PROMPT, temperature=0, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 5
    assert last.usage.total_tokens == last.usage.prompt_tokens + 5
    assert "Paris" in "".join(chunk.choices[0].text for chunk in chunks[:-1])


async def test_async_whole_answer(async_client: openai.AsyncOpenAI, model_id: str) -> None:
    completion = await async_client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=4)
    assert "Paris" in completion.choices[0].text


def test_several_prompts_and_n_are_ordered_prompt_major(client: openai.OpenAI, model_id: str) -> None:
    alone = [greedy(client, model_id, prompt).choices[0].text for prompt in (PROMPT, OTHER)]
    both = greedy(client, model_id, [PROMPT, OTHER], n=2)
    assert [choice.index for choice in both.choices] == [0, 1, 2, 3]
    # Greedy: every choice of a prompt is that prompt's answer alone, in OpenAI's order p * n + j.
    assert [choice.text for choice in both.choices] == [alone[0], alone[0], alone[1], alone[1]]
    singles = [greedy(client, model_id, prompt).usage for prompt in (PROMPT, OTHER)]
    assert both.usage.prompt_tokens == sum(u.prompt_tokens for u in singles)
    assert both.usage.completion_tokens == 2 * sum(u.completion_tokens for u in singles)


def test_several_prompts_stream(client: openai.OpenAI, model_id: str) -> None:
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in greedy(client, model_id, [PROMPT, OTHER], stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    whole = greedy(client, model_id, [PROMPT, OTHER])
    assert texts == {choice.index: choice.text for choice in whole.choices}
    assert sorted(finishes) == [0, 1]


def test_token_id_prompts_equal_their_text(client: openai.OpenAI, model_id: str, engine_probe: EngineProbe) -> None:
    ids = list(engine_probe.stub.Tokenize(engine_pb2.TokenizeRequest(text=PROMPT), timeout=10).token_ids)
    by_text = greedy(client, model_id, PROMPT)
    by_ids = greedy(client, model_id, ids)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids)
    listed = greedy(client, model_id, [ids, ids[:2]])
    assert listed.choices[0].text == by_text.choices[0].text and len(listed.choices) == 2


def test_echo_puts_the_prompt_first(client: openai.OpenAI, model_id: str) -> None:
    plain = greedy(client, model_id, PROMPT)
    echoed = greedy(client, model_id, PROMPT, echo=True)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    streamed = [chunk.choices[0].text for chunk in greedy(client, model_id, PROMPT, echo=True, stream=True)]
    assert streamed[0].startswith(PROMPT) and "".join(streamed) == echoed.choices[0].text


def test_legacy_logprobs(client: openai.OpenAI, model_id: str) -> None:
    completion = greedy(client, model_id, PROMPT, max_tokens=5, logprobs=2)
    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == completion.usage.completion_tokens == len(logprobs.token_logprobs)
    assert "".join(logprobs.tokens) == choice.text
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    for token, chosen, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        # Greedy: the chosen token is the best, so it is one of the two alternatives.
        assert len(top) == 2 and top[token] == pytest.approx(chosen) and max(top.values()) == pytest.approx(chosen)
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]
    streamed = [c.choices[0].logprobs for c in greedy(client, model_id, PROMPT, max_tokens=5, logprobs=2, stream=True)]
    tokens = [token for part in streamed if part for token in part.tokens]
    offsets = [offset for part in streamed if part for offset in part.text_offset]
    assert tokens == logprobs.tokens and offsets == logprobs.text_offset


def test_logprobs_zero_still_gives_the_chosen_token(client: openai.OpenAI, model_id: str) -> None:
    logprobs = greedy(client, model_id, PROMPT, max_tokens=3, logprobs=0).choices[0].logprobs
    assert [list(top) for top in logprobs.top_logprobs] == [[token] for token in logprobs.tokens]


def test_stop_string_cuts_the_answer(client: openai.OpenAI, model_id: str) -> None:
    text = greedy(client, model_id, OTHER, max_tokens=12).choices[0].text
    assert "five" in text, text
    cut = greedy(client, model_id, OTHER, max_tokens=12, stop=["five"])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].text == text[: text.index("five")]


def test_seed_makes_sampling_reproducible(client: openai.OpenAI, model_id: str) -> None:
    def sample(seed: int) -> str:
        return client.completions.create(
            model=model_id, prompt="My favourite animal is", temperature=1.0, seed=seed, max_tokens=12
        ).choices[0].text

    assert sample(99) == sample(99)


@pytest.mark.parametrize(
    ("patch", "param", "code"),
    [
        ({"suffix": "!"}, "suffix", "unsupported_parameter"),
        ({"echo": True, "logprobs": 1}, "logprobs", "unsupported_parameter"),
        ({"best_of": 3}, "best_of", "unsupported_parameter"),
        ({"prompt": [[1, 2]], "echo": True}, "echo", "unsupported_parameter"),
        ({"prompt": ""}, "prompt", "invalid_value"),
        ({"prompt": []}, "prompt", "invalid_value"),
        ({"prompt": [1, "a"]}, "prompt", None),
        ({"prompt": [[99_999_999]]}, "prompt", None),
        ({"logprobs": 21}, "logprobs", "invalid_value"),
        ({"logprobs": True}, "logprobs", "invalid_type"),
        ({"max_tokens": 10_000_000}, "max_tokens", None),
        ({"n": 65, "prompt": [PROMPT, OTHER]}, "n", "invalid_value"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"messages": []}, "messages", "unknown_parameter"),
    ],
)
def test_bad_requests_name_the_field(http: httpx.Client, model_id: str, patch: dict, param: str, code: str | None) -> None:
    reply = http.post("/v1/completions", json={"model": model_id, "prompt": PROMPT, "max_tokens": 2, **patch})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    # A wrong element may be named by its position (prompt[0]).
    assert error["param"] == param or error["param"].startswith(param + "["), error
    assert error["type"] == "invalid_request_error", error
    if code is not None:
        assert error["code"] == code, error


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_404(client: openai.OpenAI, model_id: str, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="no/such-model", prompt=PROMPT, stream=stream)
    assert model_id in info.value.message
