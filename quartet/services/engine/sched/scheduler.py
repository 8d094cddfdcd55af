"""Continuous batching: which sequences run in the next step, and how many tokens each. No torch.

Each step has a budget of ``max_num_batched_tokens`` tokens, filled in order:

1. Running sequences that are decoding, one token each, best rank first, so
   generation never pauses while a long prompt is being prefilled.
2. Running sequences still prefilling, the next chunk of their prompt each
   (chunked prefill: a prompt longer than what is left of the budget
   continues in the next step).
3. Waiting sequences, best rank first, while there is budget, a free seat
   (``max_num_seqs``) and KV blocks for their whole prompt (prefix-cache hits
   count as computed and cost no budget). The head of the queue is never
   skipped, so a large request cannot be starved by a stream of small ones.

Rank: priority (router > topic > default), then arrival. Aging keeps low
priorities from starving: a waiting request ranks as if it had arrived
``priority_aging_seconds`` earlier per priority level, so a default request
overtakes router requests that arrive more than two aging periods after it
(its effective priority rises by one level per aging period of waiting).

Seats for priority: when every seat (``max_num_seqs``) is taken and the
queue's head has a higher priority than the worst-ranked running sequence,
that sequence gives its seat up (preempted by recomputation, below), so a
routing decision never waits behind a full batch of topic streams. Each
sequence yields its seat at most once, which bounds what a flood of
high-priority work can cost it; recomputation is mostly prefix-cache hits.

Preemption by recomputation (vLLM's default): when a running sequence needs a
KV block and none is free, the worst-ranked running sequence (lowest
priority, newest) gives all its blocks back and returns to the waiting queue
with its tokens so far; when readmitted it prefills prompt + output again
(mostly prefix-cache hits) and carries on, invisible to the client.

Pending tokens (asynchronous scheduling, ``engine_loop.py``): the next step is
scheduled while the device still computes the last one, so a sequence may
count a token whose id is not known yet (``Sequence.num_pending_tokens``). It
decodes from it like any other token; only a sequence whose pending token is
its last allowed one (``max_tokens``) sits the step out.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from quartet.services.common.errors import ResourceExhausted
from quartet.services.engine.sched.block_manager import BlockManager
from quartet.services.engine.sched.sequence import RequestState, Sequence, SequenceStatus


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_num_seqs: int = 8
    max_num_batched_tokens: int = 512
    max_waiting: int = 256
    priority_aging_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.max_waiting < 0 or self.priority_aging_seconds <= 0:
            raise ValueError("max_num_seqs >= 1, max_waiting >= 0 and priority_aging_seconds > 0 are required")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be at least max_num_seqs "
                f"({self.max_num_seqs}) so every running sequence can decode in each step"
            )


@dataclass(frozen=True, slots=True)
class ScheduledSequence:
    """``num_new_tokens`` of ``sequence``'s tokens, from position ``start``, run this step."""

    sequence: Sequence
    start: int
    num_new_tokens: int
    needs_logits: bool  # the chunk reaches the sequence's last token: sample its next one

    @property
    def is_prefill(self) -> bool:
        return self.num_new_tokens > 1


@dataclass(slots=True)
class SchedulerOutput:
    scheduled: list[ScheduledSequence] = field(default_factory=list)  # multi-token chunks first, then decodes
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)


def _rank(seq: Sequence) -> tuple[int, float, int]:
    return (-seq.priority, seq.arrival_time, seq.seq_id)


class Scheduler:
    def __init__(self, config: SchedulerConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.block_manager = block_manager
        self._waiting: list[tuple[float, int, Sequence]] = []  # (aged arrival, order, sequence)
        self._order = itertools.count()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    @property
    def num_waiting(self) -> int:
        """Requests with a sequence waiting."""
        return len({entry[2].request_id for entry in self._waiting})

    @property
    def num_running(self) -> int:
        """Requests with a sequence running."""
        return len({seq.request_id for seq in self.running})

    @property
    def num_waiting_seqs(self) -> int:
        return len(self._waiting)

    def add(self, request: RequestState) -> None:
        if self.num_waiting >= self.config.max_waiting:
            raise ResourceExhausted(
                f"the engine queue is full ({self.config.max_waiting} requests waiting); "
                "retry later or raise ENGINE_MAX_WAITING"
            )
        for seq in request.sequences:
            seq.request_id = request.request_id
            seq.priority = int(request.priority)
            seq.arrival_time = request.arrival_time
            self._push(seq)

    def _push(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        aged = seq.arrival_time - seq.priority * self.config.priority_aging_seconds
        heapq.heappush(self._waiting, (aged, next(self._order), seq))

    def waiting(self) -> list[Sequence]:
        return [entry[2] for entry in sorted(self._waiting)]

    def schedule(self) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        chosen: dict[int, ScheduledSequence] = {}
        preempted: list[Sequence] = []
        self.running.sort(key=_rank)
        yielded = self._yield_seats()
        for decoding in (True, False):
            for seq in list(self.running):
                if seq.status is not SequenceStatus.RUNNING or (seq.num_uncomputed_tokens == 1) != decoding:
                    continue
                if seq.awaits_last_token:  # its final token is in flight; the step that brings it ends it
                    continue
                num_new = min(seq.num_uncomputed_tokens, budget)
                if num_new == 0:
                    break
                if not self._reserve(seq, num_new, chosen, preempted):
                    break  # it gave up its own blocks: everything after it ranks lower and is gone too
                chosen[seq.seq_id] = self._entry(seq, num_new)
                budget -= num_new
        # Admitting right after preempting would only thrash: the freed blocks go to those still running.
        while not preempted and self._waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self._waiting[0][2]
            if not self.block_manager.can_allocate(seq):
                break
            heapq.heappop(self._waiting)
            self.block_manager.allocate(seq)  # prefix-cache hits arrive as computed tokens
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            num_new = min(seq.num_uncomputed_tokens, budget)
            chosen[seq.seq_id] = self._entry(seq, num_new)
            budget -= num_new
        for seq in yielded:  # back in line only now, so this step's admissions cannot take them straight back
            self._push(seq)
        scheduled = sorted(chosen.values(), key=lambda s: not s.is_prefill)  # stable: rank order within each kind
        return SchedulerOutput(scheduled, preempted + yielded)

    def _yield_seats(self) -> list[Sequence]:
        """Free a seat for each waiting sequence at the head of the queue that outranks the worst running one."""
        if len(self.running) < self.config.max_num_seqs or not self._waiting:
            return []
        yielded: list[Sequence] = []
        for _key, _order, waiting in sorted(self._waiting):  # admission order
            candidates = [seq for seq in self.running if not seq.has_yielded_seat]
            if not candidates or waiting.priority <= candidates[-1].priority:
                break
            victim = candidates[-1]
            self.running.remove(victim)
            self.block_manager.free(victim)
            victim.has_yielded_seat = True
            victim.num_preemptions += 1
            self.num_preemptions += 1
            yielded.append(victim)
        return yielded

    @staticmethod
    def _entry(seq: Sequence, num_new: int) -> ScheduledSequence:
        start = seq.num_computed_tokens
        return ScheduledSequence(seq, start, num_new, needs_logits=start + num_new == seq.num_tokens)

    def _reserve(
        self, seq: Sequence, num_new: int, chosen: dict[int, ScheduledSequence], preempted: list[Sequence]
    ) -> bool:
        """Find KV room for ``seq``'s next tokens, preempting from the worst rank up; False if ``seq`` went."""
        while not self.block_manager.can_append(seq, num_new):
            victim = self.running[-1]
            self._preempt(victim)
            preempted.append(victim)
            chosen.pop(victim.seq_id, None)
            if victim is seq:
                return False
        self.block_manager.append_slots(seq, num_new)
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self._push(seq)

    def update(self, output: SchedulerOutput) -> None:
        """After the step's forward pass: the scheduled tokens now have KV in the cache."""
        for item in output.scheduled:
            seq = item.sequence
            if seq.status is SequenceStatus.RUNNING:
                seq.num_computed_tokens = item.start + item.num_new_tokens
                self.block_manager.mark_computed(seq)

    def finish(self, seq: Sequence) -> None:
        """Forget a finished (or aborted, or failed) sequence and free its blocks; idempotent."""
        if seq in self.running:
            self.running.remove(seq)
        else:
            self._remove_waiting(seq)
        self.block_manager.free(seq)

    def _remove_waiting(self, seq: Sequence) -> bool:
        for i, entry in enumerate(self._waiting):
            if entry[2] is seq:
                self._waiting[i] = self._waiting[-1]
                self._waiting.pop()
                heapq.heapify(self._waiting)
                return True
        return False
