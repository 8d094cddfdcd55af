"""The engine loop: one worker thread that owns the model and steps every running request.

Each step admits waiting requests (packing their prompts into as few prefill
passes as fit PREFILL_TOKEN_BUDGET), then advances all running sequences by
one token in a single batched decode,
samples, detokenizes and hands events to each request's sink. Aborts are
flags checked at the top of every step, so a cancelled request stops within
one decode step.

Why a thread and not an asyncio task: torch releases the GIL inside kernels,
so one thread keeps the cores busy, and callers on any event loop (the gRPC
server's, a test's, an in-process gateway's) can submit work and receive
events through a thread-safe sink without the engine being tied to one loop.
"""

from __future__ import annotations

import logging
import threading
import time

import torch

from services.common.errors import InvalidArgument, Unavailable
from services.engine.events import Complete, ErrorEvent, PositionLogprobs, TokenLogprob
from services.engine.model_runner import ModelRunner
from services.engine.output_parser import typed_chunks
from services.engine.sampler import SampledToken, SamplingRow, new_generator, sample
from services.engine.scheduler import Scheduler
from services.engine.sequence import RequestState, Sequence
from services.engine.tokenizer import Tokenizer

log = logging.getLogger(__name__)

#: Prompt tokens packed into one prefill pass. Short prompts are bound by reading the weights, so
#: packing them is nearly free; past this size a pass is compute-bound and packing gains nothing.
PREFILL_TOKEN_BUDGET = 2048


class EngineLoop:
    def __init__(self, runner: ModelRunner, tokenizer: Tokenizer, *, max_waiting: int, num_threads: int) -> None:
        self.runner = runner
        self.tokenizer = tokenizer
        self.num_threads = num_threads
        self.scheduler = Scheduler(max_num_seqs=runner.max_num_seqs, max_waiting=max_waiting)
        self._requests: dict[str, RequestState] = {}
        self._generators: dict[int, torch.Generator] = {}
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Abort everything in flight and join the worker."""
        with self._wakeup:
            self._stopping = True
            for request in self._requests.values():
                request.is_abort_requested = True
            self._wakeup.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def num_running(self) -> int:
        return self.scheduler.num_running

    @property
    def num_waiting(self) -> int:
        return self.scheduler.num_waiting

    def submit(self, request: RequestState) -> None:
        with self._wakeup:
            if self._stopping or not self._thread.is_alive():
                raise Unavailable("the engine is shutting down or its worker stopped; retry on another replica")
            if request.request_id in self._requests:
                raise InvalidArgument(
                    f"request_id {request.request_id!r} is already in use by a running request", field="request_id"
                )
            self.scheduler.add(request)
            self._requests[request.request_id] = request
            self._wakeup.notify()

    def abort(self, request_id: str) -> bool:
        with self._wakeup:
            request = self._requests.get(request_id)
            if request is None:
                return False
            request.is_abort_requested = True
            self._wakeup.notify()
            return True

    # --- the worker thread -------------------------------------------------

    def _run(self) -> None:
        torch.set_num_threads(self.num_threads)
        while True:
            with self._wakeup:
                while not self._stopping and not self._requests:
                    self._wakeup.wait()
                if self._stopping and not self._requests:
                    return
                admitted = []
                try:
                    self._handle_aborts()
                    while self.scheduler.can_admit():
                        admitted.append(self.scheduler.admit())
                except Exception:  # noqa: BLE001 - the worker must outlive any one request
                    log.exception("engine bookkeeping failed")
            try:
                if admitted:
                    self._prefill(admitted)
                self._decode()
            except Exception:  # noqa: BLE001 - one bad step must not kill the engine
                log.exception("engine step failed")
                self._fail_running("the engine failed while generating; see the engine log")
            self._retire_finished()

    def _handle_aborts(self) -> None:
        """Finish aborted requests, waiting or running (called with the lock held)."""
        for request in list(self._requests.values()):
            if not request.is_abort_requested:
                continue
            self.scheduler.remove_waiting(request)
            if request.is_finished:  # already completed in the step that raced with the abort
                continue
            for sequence in request.sequences:
                if not sequence.is_finished:
                    sequence.abort()
                    self._release(sequence)
            self._complete(request)
        self._retire_finished_locked()

    def _prefill(self, requests: list[RequestState]) -> None:
        """Prefill the admitted requests' sequences, packing short prompts into one pass."""
        now = time.perf_counter()
        entries: list[tuple[RequestState, Sequence]] = []
        for request in requests:
            request.scheduled_time = now
            for sequence in request.sequences:
                self._generators[sequence.seq_id] = new_generator(request.sampling.seed, sequence.index)
                entries.append((request, sequence))
        for group in _packs(entries, PREFILL_TOKEN_BUDGET):
            group = [(r, s) for r, s in group if not s.is_finished]  # a choice of a request that failed
            if not group:
                continue
            try:
                logits = self.runner.prefill_many([s.seq_id for _, s in group], [s.prompt_ids for _, s in group])
            except Exception as error:  # noqa: BLE001 - fail these requests only
                log.exception("prefill failed", extra={"request_ids": sorted({r.request_id for r, _ in group})})
                for request in {id(r): r for r, _ in group}.values():
                    self._fail_request(request, f"prefill failed: {type(error).__name__}; see the engine log")
                continue
            tokens = self._sample([s for _, s in group], [r for r, _ in group], logits)
            for (request, sequence), token in zip(group, tokens):
                self._advance(request, sequence, token)

    def _decode(self) -> None:
        pairs = [(r, s) for r in self.scheduler.running for s in r.sequences if not s.is_finished]
        if not pairs:
            return
        requests = [p[0] for p in pairs]
        sequences = [p[1] for p in pairs]
        logits = self.runner.decode([s.seq_id for s in sequences], [s.last_token_id for s in sequences])
        for request, sequence, token in zip(requests, sequences, self._sample(sequences, requests, logits)):
            self._advance(request, sequence, token)

    def _sample(
        self, sequences: list[Sequence], requests: list[RequestState], logits: torch.Tensor
    ) -> list[SampledToken]:
        rows = [
            SamplingRow(r.sampling, self._generators.get(s.seq_id), s.prompt_ids, s.output_ids, s.constraint)
            for s, r in zip(sequences, requests)
        ]
        return sample(logits, rows)

    def _advance(self, request: RequestState, sequence: Sequence, token: SampledToken) -> None:
        now = time.perf_counter()
        text = sequence.append(token.token_id, now)
        logprobs = ()
        if token.logprob is not None:
            logprobs = (self._position_logprobs(token),)
        if sequence.constraint is not None and not sequence.is_finished:
            sequence.constraint.accept(token.token_id)  # and starts the next step's bitmask in the background
        chunks, sequence.finish_reason = typed_chunks(
            sequence.parser,
            index=sequence.index,
            token_id=token.token_id,
            text=text,
            usage=request.usage(),
            logprobs=logprobs,
            is_finished=sequence.is_finished,
            finish_reason=sequence.finish_reason,
        )
        for chunk in chunks:
            request.sink(chunk)
        if sequence.is_finished:
            self._release(sequence)
            if request.is_finished:
                self._complete(request)

    def _position_logprobs(self, token: SampledToken) -> PositionLogprobs:
        text = self.tokenizer.token_text
        chosen = TokenLogprob(token.token_id, text(token.token_id), token.logprob or 0.0)
        return PositionLogprobs(chosen, tuple(TokenLogprob(i, text(i), lp) for i, lp in token.top))

    def _release(self, sequence: Sequence) -> None:
        self.runner.release(sequence.seq_id)
        self._generators.pop(sequence.seq_id, None)

    def _complete(self, request: RequestState) -> None:
        """One Complete per choice, sent once all choices are done so each carries the request's final usage."""
        now = time.perf_counter()
        usage = request.usage()
        for sequence in request.sequences:
            assert sequence.finish_reason is not None
            timings = request.timings(sequence, now)
            request.sink(Complete(sequence.index, sequence.finish_reason, usage, timings, sequence.matched_stop))
        log.info(
            "generate done",
            extra={
                "request_id": request.request_id,
                "finish_reasons": [s.finish_reason.value for s in request.sequences if s.finish_reason],
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "ttft_seconds": round(timings.time_to_first_token_seconds, 4),
                "decode_tokens_per_second": round(timings.decode_tokens_per_second, 1),
                "total_seconds": round(timings.total_seconds, 4),
            },
        )

    def _fail_request(self, request: RequestState, message: str) -> None:
        for sequence in request.sequences:
            if not sequence.is_finished:
                sequence.fail()
            self._release(sequence)
        request.sink(ErrorEvent("INTERNAL", message))

    def _fail_running(self, message: str) -> None:
        for request in self.scheduler.running:
            if not request.is_finished:
                self._fail_request(request, message)

    def _retire_finished(self) -> None:
        with self._wakeup:
            self._retire_finished_locked()

    def _retire_finished_locked(self) -> None:
        for request in self.scheduler.remove_finished():
            self._requests.pop(request.request_id, None)
        for request in [r for r in self._requests.values() if r.is_finished]:  # aborted while waiting
            self._requests.pop(request.request_id, None)


def _packs(entries: list[tuple[RequestState, Sequence]], budget: int) -> list[list[tuple[RequestState, Sequence]]]:
    """Consecutive groups of at most ``budget`` prompt tokens (a longer prompt goes alone)."""
    groups: list[list[tuple[RequestState, Sequence]]] = []
    size = 0
    for entry in entries:
        length = len(entry[1].prompt_ids)
        if not groups or size + length > budget:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += length
    return groups
