"""Sequences and the scheduler, pure Python: no model, no torch."""

from __future__ import annotations

import pytest

from services.common.errors import ResourceExhausted
from services.engine.events import FinishReason
from services.engine.request import Priority, SamplingParams, StoppingCriteria
from services.engine.scheduler import Scheduler
from services.engine.sequence import RequestState, new_sequences

# A toy vocabulary: token i decodes to WORDS[i]; 0 is the end-of-sequence token.
WORDS = ["", "Hello", " world", "!", " STOP", " again", "\n"]


def decode(ids) -> str:
    return "".join(WORDS[i] for i in ids)


def make(stopping: StoppingCriteria = StoppingCriteria(), max_tokens: int = 10, n: int = 1, first: int = 0):
    return new_sequences(
        first_seq_id=first,
        n=n,
        prompt_ids=[1],
        max_tokens=max_tokens,
        stopping=stopping,
        eos_token_ids=[0],
        decode=decode,
    )


def run(sequence, tokens: list[int]) -> str:
    text = ""
    for token in tokens:
        text += sequence.append(token, now=1.0)
        if sequence.is_finished:
            break
    return text


def test_eos_stops_and_is_not_in_the_text() -> None:
    (seq,) = make()
    assert run(seq, [1, 2, 0, 3]) == "Hello world"
    assert seq.finish_reason is FinishReason.STOP
    assert seq.output_ids == [1, 2, 0]


def test_ignore_eos_keeps_going_until_max_tokens() -> None:
    (seq,) = make(StoppingCriteria(ignore_eos=True), max_tokens=4)
    run(seq, [1, 0, 2, 0, 3])
    assert seq.finish_reason is FinishReason.LENGTH
    assert len(seq.output_ids) == 4


def test_stop_token_id_ends_without_its_text() -> None:
    (seq,) = make(StoppingCriteria(stop_token_ids=(3,)))
    assert run(seq, [1, 2, 3, 5]) == "Hello world"
    assert seq.finish_reason is FinishReason.STOP and seq.matched_stop == ""


def test_stop_string_spanning_tokens_is_cut_and_reported() -> None:
    (seq,) = make(StoppingCriteria(stop=("world!",)))
    assert run(seq, [1, 2, 3, 5]) == "Hello "
    assert seq.finish_reason is FinishReason.STOP and seq.matched_stop == "world!"


def test_length_flushes_a_held_partial_stop() -> None:
    (seq,) = make(StoppingCriteria(stop=(" STOPPED",)), max_tokens=2)
    assert run(seq, [1, 4]) == "Hello STOP"
    assert seq.finish_reason is FinishReason.LENGTH


def request(priority: Priority, n: int = 1, first: int = 0) -> RequestState:
    return RequestState(
        request_id=f"r{first}",
        prompt_ids=[1],
        sampling=SamplingParams(n=n),
        stopping=StoppingCriteria(),
        priority=priority,
        sequences=make(n=n, first=first),
        sink=lambda event: None,
    )


def test_higher_priority_is_admitted_first_then_arrival_order() -> None:
    scheduler = Scheduler(max_num_seqs=8, max_waiting=8)
    a, b, c = request(Priority.DEFAULT, first=0), request(Priority.ROUTER, first=1), request(Priority.DEFAULT, first=2)
    for r in (a, b, c):
        scheduler.add(r)
    order = []
    while scheduler.can_admit():
        order.append(scheduler.admit())
    assert order == [b, a, c]
    assert scheduler.num_running == 3 and scheduler.num_waiting == 0


def test_admission_respects_batch_room_for_all_choices() -> None:
    scheduler = Scheduler(max_num_seqs=3, max_waiting=8)
    scheduler.add(request(Priority.DEFAULT, n=2, first=0))
    scheduler.add(request(Priority.DEFAULT, n=2, first=10))
    assert scheduler.can_admit()
    scheduler.admit()
    assert not scheduler.can_admit()  # 2 + 2 > 3: the second waits whole
    assert scheduler.num_waiting == 1


def test_full_queue_is_resource_exhausted_and_abort_removes_waiting() -> None:
    scheduler = Scheduler(max_num_seqs=1, max_waiting=1)
    first = request(Priority.DEFAULT)
    scheduler.add(first)
    with pytest.raises(ResourceExhausted):
        scheduler.add(request(Priority.DEFAULT, first=5))
    assert scheduler.remove_waiting(first)
    assert scheduler.num_waiting == 0


def test_finished_requests_leave_running() -> None:
    scheduler = Scheduler(max_num_seqs=4, max_waiting=4)
    r = request(Priority.DEFAULT)
    scheduler.add(r)
    scheduler.admit()
    r.sequences[0].abort()
    assert scheduler.remove_finished() == [r]
    assert scheduler.num_running == 0
