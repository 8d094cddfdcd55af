"""Sampling items checked over a real channel with the bundled model (the rest are in test_engine_generate.py)."""

from __future__ import annotations

import grpc
import pytest
from quartet.engine.v1 import engine_pb2 as pb
from quartet.engine.v1 import engine_pb2_grpc

from quartet.services.common.grpc_server import CHANNEL_OPTIONS

FRANCE = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="What is the capital of France?")])
STORY = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Tell me about dragons.")])


@pytest.fixture
async def stub(engine_address: str):
    async with grpc.aio.insecure_channel(engine_address, options=CHANNEL_OPTIONS) as channel:
        yield engine_pb2_grpc.EngineServiceStub(channel)


async def run(stub, **fields):
    chunks, completes = [], []
    async for response in stub.Generate(pb.GenerateRequest(**fields)):
        kind = response.WhichOneof("event")
        assert kind != "error", response.error
        (chunks if kind == "chunk" else completes).append(getattr(response, kind))
    return chunks, completes


def tokens(chunks, index: int = 0) -> list[int]:
    return [t for c in chunks if c.index == index for t in c.token_ids]


async def test_ignore_eos_generates_past_the_end_of_sequence_token(stub) -> None:
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    greedy = pb.SamplingParams(temperature=0)
    stopped, done = await run(stub, chat=FRANCE, sampling=greedy, stopping=pb.StoppingCriteria(max_tokens=60))
    assert done[0].finish_reason == pb.FINISH_REASON_STOP
    assert tokens(stopped)[-1] in info.eos_token_ids
    length = len(tokens(stopped)) + 5
    kept, done = await run(
        stub, chat=FRANCE, sampling=greedy, stopping=pb.StoppingCriteria(max_tokens=length, ignore_eos=True)
    )
    assert done[0].finish_reason == pb.FINISH_REASON_LENGTH
    assert tokens(kept)[: len(tokens(stopped))] == tokens(stopped)  # the same path, then on past the EOS
    assert len(tokens(kept)) == length


async def test_top_k_one_samples_the_greedy_path(stub) -> None:
    stopping = pb.StoppingCriteria(max_tokens=12, ignore_eos=True)
    greedy, _ = await run(stub, chat=STORY, sampling=pb.SamplingParams(temperature=0), stopping=stopping)
    top1, _ = await run(
        stub, chat=STORY, sampling=pb.SamplingParams(temperature=1.0, top_k=1, seed=5), stopping=stopping
    )
    assert tokens(top1) == tokens(greedy)


async def test_logit_bias_forces_a_token(stub) -> None:
    forced = (await stub.Tokenize(pb.TokenizeRequest(text=" banana"))).token_ids[0]
    chunks, _ = await run(
        stub,
        chat=STORY,
        sampling=pb.SamplingParams(temperature=0.8, seed=1, logit_bias={forced: 100.0}),
        stopping=pb.StoppingCriteria(max_tokens=4, ignore_eos=True),
    )
    assert tokens(chunks) == [forced] * 4


async def test_constrained_n_choices_carry_logprobs_and_repeat_with_a_seed(stub) -> None:
    request = dict(
        chat=FRANCE,
        sampling=pb.SamplingParams(temperature=1.2, seed=21, n=2, logprobs=True, top_logprobs=2),
        stopping=pb.StoppingCriteria(max_tokens=40),
        constraint=pb.Constraint(regex="(Paris|Lyon|Nice)( is nice)?"),
    )
    first, done = await run(stub, **request)
    again, _ = await run(stub, **request)
    for index in (0, 1):
        assert tokens(first, index) == tokens(again, index)
        for chunk in (c for c in first if c.index == index and c.token_ids):
            assert len(chunk.logprobs) == 1
            position = chunk.logprobs[0]
            assert position.chosen.token_id == chunk.token_ids[0] and position.chosen.logprob <= 0.0
            assert len(position.top) == 2 and position.top[0].logprob >= position.top[1].logprob
    assert {c.finish_reason for c in done} == {pb.FINISH_REASON_STOP}


async def test_stop_token_id_wins_over_ignore_eos(stub) -> None:
    greedy = pb.SamplingParams(temperature=0)
    full, _ = await run(stub, chat=STORY, sampling=greedy, stopping=pb.StoppingCriteria(max_tokens=6, ignore_eos=True))
    fourth = tokens(full)[3]
    chunks, done = await run(
        stub,
        chat=STORY,
        sampling=greedy,
        stopping=pb.StoppingCriteria(max_tokens=6, ignore_eos=True, stop_token_ids=[fourth]),
    )
    assert tokens(chunks) == tokens(full)[: tokens(full).index(fourth) + 1]
    assert done[0].finish_reason == pb.FINISH_REASON_STOP
