"""Who runs next: a priority queue of waiting requests and the set running now. No torch.

Higher priority first, then arrival order. A request is admitted only whole
(all of its ``n`` choices at once) and only when the running batch has room;
the head of the queue is never skipped, so a large request cannot starve.
"""

from __future__ import annotations

import heapq
import itertools

from services.common.errors import ResourceExhausted
from services.engine.sequence import RequestState, Sequence, SequenceStatus


class Scheduler:
    def __init__(self, *, max_num_seqs: int, max_waiting: int) -> None:
        self.max_num_seqs = max_num_seqs
        self.max_waiting = max_waiting
        self._waiting: list[tuple[int, int, RequestState]] = []
        self._order = itertools.count()
        self.running: list[RequestState] = []

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_running_seqs(self) -> int:
        return sum(r.num_seqs for r in self.running)

    def add(self, request: RequestState) -> None:
        if len(self._waiting) >= self.max_waiting:
            raise ResourceExhausted(
                f"the engine queue is full ({self.max_waiting} requests waiting); retry later or raise ENGINE_MAX_WAITING"
            )
        heapq.heappush(self._waiting, (-int(request.priority), next(self._order), request))

    def can_admit(self) -> bool:
        return bool(self._waiting) and self.num_running_seqs + self._waiting[0][2].num_seqs <= self.max_num_seqs

    def admit(self) -> RequestState:
        """Move the head of the queue to running (check ``can_admit`` first)."""
        _, _, request = heapq.heappop(self._waiting)
        for sequence in request.sequences:
            sequence.status = SequenceStatus.RUNNING
        self.running.append(request)
        return request

    def remove_waiting(self, request: RequestState) -> bool:
        for i, (_, _, waiting) in enumerate(self._waiting):
            if waiting is request:
                self._waiting[i] = self._waiting[-1]
                self._waiting.pop()
                heapq.heapify(self._waiting)
                return True
        return False

    def waiting(self) -> list[RequestState]:
        return [entry[2] for entry in self._waiting]

    def remove_finished(self) -> list[RequestState]:
        done = [r for r in self.running if r.is_finished]
        if done:
            self.running = [r for r in self.running if not r.is_finished]
        return done

    def running_sequences(self) -> list[Sequence]:
        return [s for r in self.running for s in r.sequences if not s.is_finished]
