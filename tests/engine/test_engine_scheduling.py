"""Sequences, pure Python: no model, no torch (the scheduler's tests are in test_engine_core_scheduler.py)."""

from __future__ import annotations

from quartet.services.engine.api.events import FinishReason
from quartet.services.engine.api.request import StoppingCriteria
from quartet.services.engine.sched.sequence import new_sequences

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
