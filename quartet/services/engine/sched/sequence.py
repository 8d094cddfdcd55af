"""Per-request and per-choice state: pure Python, no torch, testable without a model.

A ``RequestState`` is one Generate call; it owns ``n`` ``Sequence``s (choices)
that share the prompt. A sequence turns each sampled token into released text
(incremental detokenization, then stop strings) and decides when it is done.
It also carries what the scheduler and block manager track: its tokens so far,
how many of them have KV in the cache, and the blocks that hold it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quartet.services.engine.text.detokenizer import Decode, IncrementalDetokenizer
from quartet.services.engine.api.events import Event, FinishReason, Timings, Usage
from quartet.services.engine.api.request import Priority, SamplingParams, StoppingCriteria
from quartet.services.engine.text.stop_strings import StopStringMatcher

if TYPE_CHECKING:  # no xgrammar or torch here: the scheduler imports this module
    from quartet.services.engine.constraints.matcher import SequenceConstraint
    from quartet.services.engine.text.output_parser import OutputParser


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Sequence:
    """One choice of a request (compared by identity: schedulers keep it in lists and sets)."""

    seq_id: int
    index: int
    prompt_ids: list[int]
    max_tokens: int
    eos_token_ids: frozenset[int]
    stop_token_ids: frozenset[int]
    detokenizer: IncrementalDetokenizer
    stops: StopStringMatcher
    output_ids: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: FinishReason | None = None
    matched_stop: str = ""
    first_token_time: float = 0.0
    last_token_time: float = 0.0
    # Output constraint and typed-delta parser (Engineer C's constraints/ and output_parser.py), set by the
    # core after new_sequences; None when the request has no constraint / needs no parsing.
    constraint: SequenceConstraint | None = None
    parser: OutputParser | None = None
    # Scheduling state, set by Scheduler.add from the request and kept up by the scheduler and block manager.
    request_id: str = ""
    priority: int = 1
    arrival_time: float = 0.0
    token_ids: list[int] = field(default_factory=list)  # prompt + output; a preempted sequence recomputes them all
    num_computed_tokens: int = 0  # leading tokens whose KV is in the cache
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # prefix-cache hashes of full blocks (block_manager.py)
    num_marked_blocks: int = 0  # leading blocks mark_computed has looked at since the last allocation
    num_preemptions: int = 0
    has_yielded_seat: bool = False  # gave its seat to higher-priority work once; never again
    # Tokens chosen on the device by a step still in flight (asynchronous scheduling, engine_loop.py):
    # they count as tokens for scheduling (the next step decodes from them) before their ids are known.
    num_pending_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_ids) + list(self.output_ids)

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids) + self.num_pending_tokens

    @property
    def awaits_last_token(self) -> bool:
        """Its pending tokens reach ``max_tokens``: running it again would compute a token nobody may get."""
        return self.num_pending_tokens > 0 and len(self.output_ids) + self.num_pending_tokens >= self.max_tokens

    @property
    def num_uncomputed_tokens(self) -> int:
        """Tokens still to run through the model: 1 while decoding, more while (re)prefilling."""
        return self.num_tokens - self.num_computed_tokens

    @property
    def last_token_id(self) -> int:
        return self.output_ids[-1]

    def append(self, token_id: int, now: float) -> str:
        """Record a sampled token; return the text it releases. May finish the sequence."""
        if self.is_finished:
            raise RuntimeError(f"sequence {self.seq_id} is finished")
        self.output_ids.append(token_id)
        self.token_ids.append(token_id)
        if not self.first_token_time:
            self.first_token_time = now
        self.last_token_time = now
        if token_id in self.eos_token_ids or token_id in self.stop_token_ids:
            # The stop token's own text is never part of the output.
            return self._finish(FinishReason.STOP, self.detokenizer.flush())
        released = self.stops.push(self.detokenizer.push(token_id))
        if released.matched is not None:
            self._set_finished(FinishReason.STOP, released.matched)
            return released.text
        if len(self.output_ids) >= self.max_tokens:
            return released.text + self._finish(FinishReason.LENGTH, self.detokenizer.flush())
        return released.text

    def end_for_length(self) -> str:
        """Finish as "length" before max_tokens: the budget forced the constraint's ending, now written."""
        return self._finish(FinishReason.LENGTH, self.detokenizer.flush())

    def abort(self) -> str:
        """Finish as aborted, releasing no more text."""
        self._set_finished(FinishReason.ABORT)
        return ""

    def fail(self) -> None:
        self._set_finished(FinishReason.ERROR)

    def _finish(self, reason: FinishReason, tail: str) -> str:
        """End with ``reason``, after pushing the detokenizer's tail through the stop strings."""
        released = self.stops.push(tail)
        if released.matched is not None:
            self._set_finished(FinishReason.STOP, released.matched)
            return released.text
        self._set_finished(reason)
        return released.text + self.stops.flush()

    def _set_finished(self, reason: FinishReason, matched_stop: str = "") -> None:
        self.status = SequenceStatus.FINISHED
        self.finish_reason = reason
        self.matched_stop = matched_stop

    def decode_tokens_per_second(self) -> float:
        span = self.last_token_time - self.first_token_time
        return (len(self.output_ids) - 1) / span if span > 0 and len(self.output_ids) > 1 else 0.0


Sink = Callable[[Event], None]


@dataclass(slots=True)
class RequestState:
    """One Generate call as the engine loop sees it."""

    request_id: str
    prompt_ids: list[int]
    sampling: SamplingParams
    stopping: StoppingCriteria
    priority: Priority
    sequences: list[Sequence]
    sink: Sink
    arrival_time: float = field(default_factory=time.perf_counter)
    scheduled_time: float = 0.0
    is_abort_requested: bool = False

    @property
    def num_seqs(self) -> int:
        return len(self.sequences)

    @property
    def is_finished(self) -> bool:
        return all(s.is_finished for s in self.sequences)

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=len(self.prompt_ids), completion_tokens=sum(len(s.output_ids) for s in self.sequences)
        )

    def timings(self, sequence: Sequence, now: float) -> Timings:
        first = min((s.first_token_time for s in self.sequences if s.first_token_time), default=0.0)
        return Timings(
            queue_seconds=max(0.0, (self.scheduled_time or now) - self.arrival_time),
            time_to_first_token_seconds=max(0.0, first - self.arrival_time) if first else 0.0,
            decode_tokens_per_second=sequence.decode_tokens_per_second(),
            total_seconds=now - self.arrival_time,
        )


def new_sequences(
    *,
    first_seq_id: int,
    n: int,
    prompt_ids: Seq[int],
    max_tokens: int,
    stopping: StoppingCriteria,
    eos_token_ids: Seq[int],
    decode: Decode,
) -> list[Sequence]:
    """The ``n`` choices of a request, each with its own detokenizer and stop matcher."""
    eos = frozenset(() if stopping.ignore_eos else eos_token_ids)
    return [
        Sequence(
            seq_id=first_seq_id + i,
            index=i,
            prompt_ids=list(prompt_ids),
            max_tokens=max_tokens,
            eos_token_ids=eos,
            stop_token_ids=frozenset(stopping.stop_token_ids),
            detokenizer=IncrementalDetokenizer(decode, prompt_ids),
            stops=StopStringMatcher(stopping.stop),
        )
        for i in range(n)
    ]
