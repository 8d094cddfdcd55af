"""Asynchronous scheduling: the next step launches before the last one's tokens are read.

The engine then schedules with pending tokens (known on the device only), so
whatever depends on a token's id (stopping, streaming, preemption, prefix
hashing) happens one step later than the scheduling that already counted it.
On the CPU the "device" is the CPU, but the bookkeeping is the same, so these
tests force it on (ENGINE_ASYNC_SCHEDULING=true) and demand exactly what the
synchronous engine (the session's ``engine_core``) gives: same tokens, same
text, same finish reasons, no token past a stop or ``max_tokens``, and seeded
sampling that reproduces while greedy rows around it overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from quartet.services.engine.core import EngineCore
from quartet.services.engine.api.events import Chunk, Complete
from quartet.services.engine.model_cache import ensure_bundled_model
from quartet.services.engine.runner.native import NativeRunner
from quartet.services.engine.runner.pending_inputs import pending_inputs
from quartet.services.engine.api.request import ChatInput, ChatMessage, GenerateRequest, SamplingParams, StoppingCriteria
from quartet.services.engine.sched.scheduler import ScheduledSequence
from quartet.services.engine.settings import EngineSettings
from quartet.services.engine.text.tokenizer import load_tokenizer
from tests.engine.test_engine_core_batching import QUESTIONS, SYSTEM, free_port, scrape
from tests.helpers import ThreadLoop


def close(core: EngineCore, name: str) -> None:
    with ThreadLoop(name) as loop:
        loop.run(core.close())


@pytest.fixture(scope="module")
def async_core() -> Iterator[EngineCore]:
    """Pressure as in test_engine_core_batching: chunked prefill, prefix sharing and preemption all happen."""
    settings = EngineSettings(
        _env_file=None, weight_format="bf16", kv_cache_blocks=12, block_size=16, max_num_seqs=4,
        max_num_batched_tokens=32, metrics_port=free_port(), async_scheduling=True,
    )  # fmt: skip
    core = EngineCore.from_settings(settings)
    yield core
    close(core, "async-close")


@pytest.fixture(scope="module")
def async_graphs_core() -> Iterator[EngineCore]:
    """Decode through the CUDA-graph static buffers (capture off on CPU): pending tokens go into them."""
    directory = ensure_bundled_model(quiet=True)
    settings = EngineSettings(_env_file=None, weight_format="bf16", max_num_seqs=4, kv_cache_blocks=64)
    runner = NativeRunner.load(directory, settings_options(settings))
    runner.enable_decode_graphs(capture=False)
    core = EngineCore(
        model_id=settings.model_id, tokenizer=load_tokenizer(directory), runner=runner,
        scheduler=scheduler_config(settings), num_threads=2, async_scheduling=True,
    )  # fmt: skip
    yield core
    close(core, "async-graphs-close")


def settings_options(settings: EngineSettings):  # noqa: ANN201 - RunnerOptions
    from quartet.services.engine.runner.base import RunnerOptions

    return RunnerOptions(
        max_num_seqs=settings.max_num_seqs, num_kv_blocks=settings.kv_cache_blocks, weight_format="bf16"
    )


def scheduler_config(settings: EngineSettings):  # noqa: ANN201 - SchedulerConfig
    from quartet.services.engine.sched.scheduler import SchedulerConfig

    return SchedulerConfig(max_num_seqs=settings.max_num_seqs, max_num_batched_tokens=64)


def chat(question: str, *, max_tokens: int = 24, ignore_eos: bool = True, stop: tuple[str, ...] = (), n: int = 1,
         temperature: float = 0.0, seed: int | None = None) -> GenerateRequest:  # fmt: skip
    return GenerateRequest(
        input=ChatInput((ChatMessage("system", SYSTEM), ChatMessage("user", question))),
        sampling=SamplingParams(temperature=temperature, seed=seed, n=n),
        stopping=StoppingCriteria(max_tokens=max_tokens, ignore_eos=ignore_eos, stop=stop),
    )


async def outcome(core: EngineCore, req: GenerateRequest) -> list[tuple[list[int], str, str]]:
    """Per choice: token ids, text, finish reason."""
    ids: dict[int, list[int]] = {}
    text: dict[int, str] = {}
    reasons: dict[int, str] = {}
    async for event in core.generate(req):
        if isinstance(event, Chunk):
            ids.setdefault(event.index, []).extend(event.token_ids)
            text[event.index] = text.get(event.index, "") + event.text
        else:
            assert isinstance(event, Complete), event
            reasons[event.index] = event.finish_reason.value
    return [(ids.get(i, []), text.get(i, ""), reasons[i]) for i in sorted(reasons)]


def steps(core: EngineCore) -> dict[str, float]:
    counts = {"true": 0.0, "false": 0.0}
    for metric in core.metrics.steps.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["overlapped"]] = sample.value
    return counts


async def test_greedy_outputs_match_the_synchronous_engine_through_chunking_and_preemption(
    engine_core, async_core
) -> None:
    alone = [await outcome(engine_core, chat(q)) for q in QUESTIONS]
    before, overlapped_before = scrape(async_core), steps(async_core)["true"]
    together = await asyncio.gather(*(outcome(async_core, chat(q)) for q in QUESTIONS))
    assert together == alone
    after = scrape(async_core)
    assert after["quartet_engine_preemptions_total"] > before.get("quartet_engine_preemptions_total", 0)
    # Exactly max_tokens each: the step launched while a sequence's last token was pending never ran for it.
    generated = after["quartet_engine_generation_tokens_total"] - before.get("quartet_engine_generation_tokens_total", 0)
    assert generated == 24 * len(QUESTIONS)
    assert steps(async_core)["true"] - overlapped_before > 24  # the decodes really overlapped
    assert after["quartet_engine_num_requests_running"] == 0 and after["quartet_engine_kv_cache_usage_ratio"] == 0


async def test_stops_eos_n_and_a_seeded_sampler_beside_overlapped_greedy_rows(engine_core, async_core) -> None:
    """A stop string or EOS ends a sequence one step after the engine scheduled past it: nothing leaks."""
    requests = [
        chat("Name a large mammal.", max_tokens=40, ignore_eos=False),  # ends on EOS, one step computed past it
        chat("What is the capital of France?", max_tokens=40, ignore_eos=False, stop=("Paris", " is")),
        chat("Why is the sky blue?", max_tokens=12, n=2),
        chat("Tell me about owls.", max_tokens=16, temperature=0.9, seed=7),  # host sampling: read before next
    ]
    alone = [await outcome(engine_core, r) for r in requests]
    together = await asyncio.gather(*(outcome(async_core, r) for r in requests))
    assert together == alone
    assert alone[0][0][2] == "stop" and alone[1][0][2] == "stop"  # the cases this test is about did happen
    assert "Paris" not in alone[1][0][1]


async def test_pending_tokens_flow_through_the_decode_graph_buffers(engine_core, async_graphs_core) -> None:
    questions = QUESTIONS[:3]
    alone = [await outcome(engine_core, chat(q, max_tokens=20)) for q in questions]
    together = await asyncio.gather(*(outcome(async_graphs_core, chat(q, max_tokens=20)) for q in questions))
    assert together == alone
    assert steps(async_graphs_core)["true"] > 20


async def test_an_abort_while_a_step_is_in_flight_ends_the_request_and_the_engine_serves_on(async_core) -> None:
    req = chat("Tell me a long story about owls.", max_tokens=120)
    req = GenerateRequest(input=req.input, request_id="async-abort", sampling=req.sampling, stopping=req.stopping)
    received: list[int] = []
    reason, aborted = None, False
    async for event in async_core.generate(req):
        if isinstance(event, Chunk):
            received.extend(event.token_ids)
            if len(received) >= 5 and not aborted:
                aborted = await async_core.abort("async-abort")
                assert aborted
        else:
            reason = event.finish_reason.value
    assert reason == "abort" and 5 <= len(received) < 120
    follow_up = await outcome(async_core, chat("What is 2 + 2?", max_tokens=6))
    assert len(follow_up[0][0]) == 6 and follow_up[0][2] == "length"
    assert async_core.runner.kv_layout.num_blocks == 12 and scrape(async_core)["quartet_engine_kv_cache_usage_ratio"] == 0


def test_a_step_past_the_known_tokens_needs_the_step_that_picked_the_missing_one() -> None:
    from quartet.services.engine.sched.sequence import new_sequences

    (seq,) = new_sequences(first_seq_id=0, n=1, prompt_ids=[1, 2, 3], max_tokens=4, stopping=StoppingCriteria(),
                           eos_token_ids=[], decode=lambda ids: "")  # fmt: skip
    seq.num_pending_tokens = 1  # a step in flight picks token 4
    item = ScheduledSequence(seq, start=3, num_new_tokens=1, needs_logits=True)
    with pytest.raises(RuntimeError, match="no step in flight picked"):
        pending_inputs([item], None)
    seq.output_ids.extend([9, 9, 9])
    assert seq.awaits_last_token  # 3 known + 1 pending = max_tokens: the scheduler leaves it out


async def test_no_step_is_launched_for_a_sequence_whose_last_token_is_pending(async_core) -> None:
    """max_tokens=1 on a cached prompt: one prefill step picks the token; with it pending, nothing else runs."""
    req = chat("Name a small bird.", max_tokens=1)
    await outcome(async_core, req)  # the prompt's full blocks are now in the prefix cache
    before = sum(steps(async_core).values())
    (only,) = await outcome(async_core, req)
    assert len(only[0]) == 1 and only[2] == "length"
    assert sum(steps(async_core).values()) - before == 1  # the remaining prompt tokens fit one 32-token step
