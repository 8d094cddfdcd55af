"""Generate's behaviours over a real channel: sampling, stopping, abort, cancellation, concurrency."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS

FRANCE = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="What is the capital of France?")])
STORY = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Write a long story about a dragon.")])


@pytest.fixture
async def stub(engine_address: str):
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def collect(stub, request: pb.GenerateRequest):
    chunks, completes = [], []
    async for response in stub.Generate(request):
        kind = response.WhichOneof("event")
        assert kind != "error", response.error
        (chunks if kind == "chunk" else completes).append(getattr(response, kind))
    return chunks, completes


def text_of(chunks, index: int = 0) -> str:
    return "".join(c.text for c in chunks if c.index == index)


async def wait_until_idle(stub, timeout: float = 10.0) -> pb.GetModelInfoResponse:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await stub.GetModelInfo(pb.GetModelInfoRequest())
        if info.num_running == 0 and info.num_waiting == 0:
            return info
        if asyncio.get_running_loop().time() > deadline:
            return info
        await asyncio.sleep(0.05)


async def test_seed_reproduces_a_sampled_request_and_another_seed_differs(stub) -> None:
    def request(seed: int) -> pb.GenerateRequest:
        return pb.GenerateRequest(
            chat=STORY,
            sampling=pb.SamplingParams(temperature=1.0, top_p=0.95, seed=seed),
            stopping=pb.StoppingCriteria(max_tokens=24, ignore_eos=True),
        )

    a, _ = await collect(stub, request(1234))
    b, _ = await collect(stub, request(1234))
    c, _ = await collect(stub, request(99))
    tokens = lambda chunks: [t for ch in chunks for t in ch.token_ids]  # noqa: E731
    assert tokens(a) == tokens(b)
    assert tokens(a) != tokens(c)


async def test_stop_string_is_not_emitted_and_no_prefix_leaks(stub) -> None:
    greedy = pb.SamplingParams(temperature=0)
    full, _ = await collect(
        stub, pb.GenerateRequest(chat=FRANCE, sampling=greedy, stopping=pb.StoppingCriteria(max_tokens=30))
    )
    answer = text_of(full)
    assert "France is Paris" in answer
    stop = "France is Paris"
    chunks, completes = await collect(
        stub,
        pb.GenerateRequest(
            chat=FRANCE, sampling=greedy, stopping=pb.StoppingCriteria(max_tokens=30, stop=[stop, "never"])
        ),
    )
    streamed = text_of(chunks)
    # A leaked prefix ("France", "France is") would show up in the concatenated stream.
    assert streamed == answer[: answer.index(stop)]
    assert completes[0].finish_reason == pb.FINISH_REASON_STOP
    assert completes[0].matched_stop == stop


async def test_max_tokens_ends_with_length(stub) -> None:
    chunks, completes = await collect(
        stub,
        pb.GenerateRequest(
            chat=STORY,
            sampling=pb.SamplingParams(temperature=0),
            stopping=pb.StoppingCriteria(max_tokens=5, ignore_eos=True),
        ),
    )
    assert sum(len(c.token_ids) for c in chunks) == 5
    assert completes[0].finish_reason == pb.FINISH_REASON_LENGTH
    assert completes[0].usage.completion_tokens == 5


async def test_stop_token_id_ends_generation(stub) -> None:
    greedy = pb.SamplingParams(temperature=0)
    full, _ = await collect(
        stub, pb.GenerateRequest(chat=FRANCE, sampling=greedy, stopping=pb.StoppingCriteria(max_tokens=8))
    )
    third = full[2].token_ids[0]
    chunks, completes = await collect(
        stub,
        pb.GenerateRequest(
            chat=FRANCE, sampling=greedy, stopping=pb.StoppingCriteria(max_tokens=8, stop_token_ids=[third])
        ),
    )
    assert [c.token_ids[0] for c in chunks] == [c.token_ids[0] for c in full[:3]]
    assert completes[0].finish_reason == pb.FINISH_REASON_STOP
    assert text_of(chunks) == text_of(full[:2])


async def test_token_ids_and_text_inputs_generate(stub) -> None:
    tokens = await stub.Tokenize(pb.TokenizeRequest(text="The capital of France is"))
    by_ids, _ = await collect(
        stub,
        pb.GenerateRequest(
            token_ids=pb.TokenIds(ids=tokens.token_ids),
            sampling=pb.SamplingParams(temperature=0),
            stopping=pb.StoppingCriteria(max_tokens=6),
        ),
    )
    by_text, completes = await collect(
        stub,
        pb.GenerateRequest(
            text="The capital of France is",
            sampling=pb.SamplingParams(temperature=0),
            stopping=pb.StoppingCriteria(max_tokens=6),
        ),
    )
    assert text_of(by_ids) == text_of(by_text)
    assert completes[0].usage.prompt_tokens == len(tokens.token_ids)


async def test_n_choices_and_logprobs(stub) -> None:
    chunks, completes = await collect(
        stub,
        pb.GenerateRequest(
            chat=STORY,
            sampling=pb.SamplingParams(temperature=1.0, seed=7, n=2, logprobs=True, top_logprobs=3),
            stopping=pb.StoppingCriteria(max_tokens=8, ignore_eos=True),
        ),
    )
    assert sorted(c.index for c in completes) == [0, 1]
    assert all(c.usage.completion_tokens == 16 for c in completes)
    assert text_of(chunks, 0) != text_of(chunks, 1)
    for chunk in chunks:
        assert len(chunk.logprobs) == len(chunk.token_ids) == 1
        position = chunk.logprobs[0]
        assert position.chosen.token_id == chunk.token_ids[0]
        assert position.chosen.logprob <= 0
        assert len(position.top) == 3
        assert (
            position.top[0].logprob
            >= position.top[1].logprob
            >= position.top[2].logprob
            >= position.chosen.logprob - 1e9
        )


async def test_greedy_logprobs_chosen_is_the_top_alternative(stub) -> None:
    chunks, _ = await collect(
        stub,
        pb.GenerateRequest(
            chat=FRANCE,
            sampling=pb.SamplingParams(temperature=0, logprobs=True, top_logprobs=1),
            stopping=pb.StoppingCriteria(max_tokens=4),
        ),
    )
    for chunk in chunks:
        position = chunk.logprobs[0]
        assert position.top[0].token_id == position.chosen.token_id
        assert position.top[0].logprob == pytest.approx(position.chosen.logprob)


async def test_concurrent_requests_all_complete(stub) -> None:
    request = pb.GenerateRequest(
        chat=FRANCE, sampling=pb.SamplingParams(temperature=0), stopping=pb.StoppingCriteria(max_tokens=20)
    )
    results = await asyncio.gather(*(collect(stub, request) for _ in range(4)))
    for chunks, completes in results:
        assert "Paris" in text_of(chunks)
        assert len(completes) == 1 and completes[0].finish_reason == pb.FINISH_REASON_STOP
    assert (await wait_until_idle(stub)).num_running == 0


async def test_abort_by_request_id(stub) -> None:
    request = pb.GenerateRequest(
        request_id="abort-me",
        chat=STORY,
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=4000, ignore_eos=True),
    )
    call = stub.Generate(request)
    first = await call.read()
    assert first.WhichOneof("event") == "chunk"
    assert (await stub.Abort(pb.AbortRequest(request_id="abort-me"))).found
    events = []
    while (response := await call.read()) is not grpc.aio.EOF:
        events.append(response)
    assert events[-1].WhichOneof("event") == "complete"
    assert events[-1].complete.finish_reason == pb.FINISH_REASON_ABORT
    assert events[-1].complete.usage.completion_tokens < 4000
    assert not (await stub.Abort(pb.AbortRequest(request_id="abort-me"))).found
    assert not (await stub.Abort(pb.AbortRequest(request_id="no-such-request"))).found


async def test_client_cancel_frees_the_engine(stub) -> None:
    request = pb.GenerateRequest(
        chat=STORY,
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=4000, ignore_eos=True),
    )
    call = stub.Generate(request)
    await call.read()
    await call.read()
    running = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert running.num_running == 1
    call.cancel()
    info = await wait_until_idle(stub)
    assert info.num_running == 0 and info.num_waiting == 0
