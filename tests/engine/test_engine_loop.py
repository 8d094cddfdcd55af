"""The engine loop's bookkeeping with a scripted stand-in for the model: failures, aborts, admission.

The real model is exercised over gRPC elsewhere; here a runner that returns
fixed logits (and fails on demand) makes the loop's error paths reachable.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence

import pytest
import torch

from quartet.services.engine.engine_loop import EngineLoop
from quartet.services.engine.api.events import Chunk, Complete, ErrorEvent, FinishReason
from quartet.services.engine.api.request import Priority, SamplingParams, StoppingCriteria
from quartet.services.engine.runner.base import KVLayout, ModelRunner, RunnerInfo
from quartet.services.engine.sched.scheduler import ScheduledSequence, SchedulerConfig
from quartet.services.engine.sched.sequence import RequestState, new_sequences

VOCAB = 8


class ScriptedRunner(ModelRunner):
    """Always predicts token 3; raises on a step with a decode in it while ``fail_decode`` is set."""

    def __init__(self, max_num_seqs: int) -> None:
        self.info = RunnerInfo("scripted", "none", VOCAB, 1024, "cpu", "float32")
        self.max_num_seqs = max_num_seqs
        self.kv_layout = KVLayout(num_blocks=64, block_size=16, enable_prefix_caching=False)
        self.fail_decode = False
        self.broken_logits = False
        self.active: set[int] = set()

    def execute(self, batch: Sequence[ScheduledSequence]) -> torch.Tensor:
        self.active.update(item.sequence.seq_id for item in batch)
        if self.fail_decode and any(item.start > 0 for item in batch):
            raise RuntimeError("scripted failure")
        if self.broken_logits:  # a forward pass that "succeeds" with logits sampling cannot use
            return torch.zeros(VOCAB)
        logits = torch.zeros(sum(item.needs_logits for item in batch), VOCAB)
        logits[:, 3] = 10.0
        return logits

    def release(self, seq_id: int) -> None:
        self.active.discard(seq_id)

    @property
    def num_active(self) -> int:
        return len(self.active)


class ToyTokenizer:
    def token_text(self, token_id: int) -> str:
        return f"<{token_id}>"


@pytest.fixture
def loop_and_runner():
    runner = ScriptedRunner(max_num_seqs=1)
    config = SchedulerConfig(max_num_seqs=1, max_num_batched_tokens=64, max_waiting=4)
    loop = EngineLoop(runner, ToyTokenizer(), config, num_threads=1)  # type: ignore[arg-type]
    loop.start()
    yield loop, runner
    loop.stop()


_seq_ids = iter(range(10_000))


def submit(
    loop: EngineLoop,
    request_id: str,
    max_tokens: int,
    priority: Priority = Priority.DEFAULT,
    timeline: list[str] | None = None,
) -> queue.Queue:
    events: queue.Queue = queue.Queue()

    def sink(event) -> None:
        if timeline is not None:
            timeline.append(request_id)  # the worker thread emits events in the order it runs them
        events.put(event)

    stopping = StoppingCriteria(max_tokens=max_tokens, ignore_eos=True)
    loop.submit(
        RequestState(
            request_id=request_id,
            prompt_ids=[1, 2],
            sampling=SamplingParams(temperature=0),
            stopping=stopping,
            priority=priority,
            sequences=new_sequences(
                first_seq_id=next(_seq_ids),
                n=1,
                prompt_ids=[1, 2],
                max_tokens=max_tokens,
                stopping=stopping,
                eos_token_ids=[0],
                decode=lambda ids: "".join(f"<{i}>" for i in ids),
            ),
            sink=sink,
        )
    )
    return events


def drain(events: queue.Queue) -> list:
    out = []
    while True:
        event = events.get(timeout=10)
        out.append(event)
        if isinstance(event, (Complete, ErrorEvent)):
            return out


def test_a_failing_step_errors_its_requests_and_the_loop_keeps_serving(loop_and_runner) -> None:
    loop, runner = loop_and_runner
    runner.fail_decode = True
    failed = drain(submit(loop, "bad", max_tokens=5))
    assert isinstance(failed[-1], ErrorEvent) and failed[-1].code == "INTERNAL"
    assert runner.num_active == 0
    runner.fail_decode = False
    served = drain(submit(loop, "good", max_tokens=3))
    assert isinstance(served[-1], Complete) and served[-1].finish_reason is FinishReason.LENGTH
    assert "".join(e.text for e in served if isinstance(e, Chunk)) == "<3><3><3>"


def test_a_step_that_fails_after_the_forward_pass_keeps_the_worker_alive(loop_and_runner) -> None:
    # Regression: an exception while sampling or advancing used to escape the step and end the
    # worker thread, leaving every open stream waiting forever.
    loop, runner = loop_and_runner
    runner.broken_logits = True
    failed = drain(submit(loop, "bad", max_tokens=5))
    assert isinstance(failed[-1], ErrorEvent) and failed[-1].code == "INTERNAL"
    runner.broken_logits = False
    served = drain(submit(loop, "good", max_tokens=2))
    assert isinstance(served[-1], Complete) and served[-1].finish_reason is FinishReason.LENGTH


def test_abort_of_a_waiting_request_completes_it_without_tokens(loop_and_runner) -> None:
    loop, runner = loop_and_runner
    long = submit(loop, "long", max_tokens=1000)
    assert isinstance(long.get(timeout=10), Chunk)  # running, holding the only slot
    waiting = submit(loop, "waiting", max_tokens=5)
    assert loop.num_waiting == 1
    assert loop.abort("waiting")
    events = drain(waiting)
    assert len(events) == 1 and events[0].finish_reason is FinishReason.ABORT
    assert events[0].usage.completion_tokens == 0
    assert loop.abort("long")
    assert drain(long)[-1].finish_reason is FinishReason.ABORT
    assert runner.num_active == 0  # released before its Complete went out


def test_router_priority_overtakes_waiting_default_work(loop_and_runner) -> None:
    loop, runner = loop_and_runner
    first = submit(loop, "first", max_tokens=200)
    first.get(timeout=10)
    timeline: list[str] = []
    default = submit(loop, "default", max_tokens=2, timeline=timeline)
    router = submit(loop, "router", max_tokens=2, priority=Priority.ROUTER, timeline=timeline)
    loop.abort("first")
    drain(first)
    drain(router)
    drain(default)
    assert timeline == ["router"] * 3 + ["default"] * 3  # 2 chunks and a Complete each


def test_submit_after_stop_is_unavailable(loop_and_runner) -> None:
    from quartet.services.common.errors import Unavailable

    loop, _ = loop_and_runner
    loop.stop()
    with pytest.raises(Unavailable):
        submit(loop, "late", max_tokens=1)
