"""The engine loop: one worker thread that owns the model and runs the scheduler's steps.

Each step the scheduler picks the tokens to run (decodes, prompt chunks, new
prompts; see ``scheduler.py``), the runner computes them in one forward pass,
and the sequences whose chunk reached their last token sample a next token,
detokenize it and hand events to their request's sink. Aborts are flags
checked at the top of every step, so a cancelled request stops within one step.

Asynchronous scheduling (on by default on CUDA): when every row of a step takes
its argmax, the device picks the tokens, and the loop launches the next step
before reading them: the sequences that go on decode from the tokens still on
the device (``pending_inputs.py``), while the host streams the previous step's
tokens. The GPU then never waits for the host's scheduling, detokenization and
streaming. What it costs: a sequence that stops (an EOS, a stop string) has one
step computed past its end, which is discarded; a sequence at ``max_tokens``
is not scheduled again. A step with any other row (sampling, penalties,
logprobs, a grammar) is read before the next one is scheduled, as before.

Why a thread and not an asyncio task: torch releases the GIL inside kernels,
so one thread keeps the cores busy, and callers on any event loop (the gRPC
server's, a test's, an in-process gateway's) can submit work and receive
events through a thread-safe sink without the engine being tied to one loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import torch

from quartet.services.common.errors import InvalidArgument, Unavailable
from quartet.services.engine.sched.block_manager import BlockManager
from quartet.services.engine.api.events import Complete, ErrorEvent, PositionLogprobs, TokenLogprob
from quartet.services.engine.metrics import EngineMetrics
from quartet.services.engine.text.output_parser import typed_chunks
from quartet.services.engine.runner.base import LaunchedStep, ModelRunner
from quartet.services.engine.runner.sampler import SampledToken, SamplingRow, is_argmax_only, new_generator, sample
from quartet.services.engine.sched.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from quartet.services.engine.sched.sequence import RequestState, Sequence
from quartet.services.engine.api.sinks import Outbox
from quartet.services.engine.text.tokenizer_base import Tokenizer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Step:
    """A launched step and what reading its results needs."""

    output: SchedulerOutput
    launched: LaunchedStep
    sampled: list[Sequence]  # the sequences that get a token, in row order
    requests: list[RequestState]
    on_device: bool  # every row's token is its argmax, picked on the device
    overlapped: bool  # the next step may launch before this one is read


class EngineLoop:
    def __init__(
        self,
        runner: ModelRunner,
        tokenizer: Tokenizer,
        config: SchedulerConfig,
        *,
        num_threads: int,
        metrics: EngineMetrics | None = None,
        async_scheduling: bool = False,
    ) -> None:
        self.runner = runner
        self.async_scheduling = async_scheduling and runner.supports_pending_tokens
        self.tokenizer = tokenizer
        self.num_threads = num_threads
        layout = runner.kv_layout
        self.block_manager = BlockManager(
            layout.num_blocks, layout.block_size, enable_prefix_caching=layout.enable_prefix_caching
        )
        self.scheduler = Scheduler(config, self.block_manager)
        self.metrics = metrics or EngineMetrics()
        self._requests: dict[str, RequestState] = {}
        self._request_of: dict[int, RequestState] = {}  # seq_id -> its request
        self._generators: dict[int, torch.Generator] = {}
        self._outbox = Outbox()  # a step's events, handed to the callers' event loops together
        # Reentrant: a step's bookkeeping (finishing sequences) runs both inside and outside the abort handling.
        self._wakeup = threading.Condition(threading.RLock())
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
            for sequence in request.sequences:
                self._request_of[sequence.seq_id] = request
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
        in_flight: _Step | None = None
        while True:
            with self._wakeup:
                while not self._stopping and not self._requests and in_flight is None:
                    self._wakeup.wait()
                if self._stopping and not self._requests and in_flight is None:
                    self._outbox.flush()
                    return
                try:
                    self._handle_aborts()
                    output = self.scheduler.schedule()
                    if output.is_empty and self._requests and not self.scheduler.running and in_flight is None:
                        self._fail_unschedulable()
                except Exception:  # noqa: BLE001 - the worker must outlive any one request
                    log.exception("engine bookkeeping failed")
                    self._fail_running("the engine's scheduler failed; see the engine log")
                    output = SchedulerOutput()
            step = None
            if not output.is_empty:
                try:
                    step = self._launch(output, in_flight)
                except Exception as error:  # noqa: BLE001 - fail this step's requests, keep serving
                    self._fail_step(output, error)
            if in_flight is not None:  # read the previous step while the device runs this one
                self._read(in_flight)
                in_flight = None
                self._outbox.flush()  # stream its tokens now, not after this step's bookkeeping
            if step is not None:
                try:
                    with self._wakeup:
                        self.scheduler.update(output)
                except Exception as error:  # noqa: BLE001
                    self._fail_step(output, error)
                    step = None
            if step is not None:
                if step.overlapped:
                    in_flight = step
                else:
                    self._read(step)
            self._outbox.flush()
            self._retire_finished()
            self.metrics.observe_step(self.scheduler, self.block_manager)

    def _launch(self, output: SchedulerOutput, in_flight: _Step | None) -> _Step:
        now = time.perf_counter()
        for sequence in output.preempted:
            self.runner.release(sequence.seq_id)
        self.metrics.preemptions.inc(len(output.preempted))
        for item in output.scheduled:
            request = self._request_of[item.sequence.seq_id]
            if not request.scheduled_time:
                request.scheduled_time = now
                self.metrics.queue_seconds.observe(now - request.arrival_time)
        for item in output.scheduled:  # grammar bitmasks fill on the CPU while the forward pass runs
            if item.needs_logits and item.sequence.constraint is not None:
                item.sequence.constraint.prepare()
        sampled = [item.sequence for item in output.scheduled if item.needs_logits]
        requests = [self._request_of[s.seq_id] for s in sampled]
        for sequence, request in zip(sampled, requests):
            if sequence.seq_id not in self._generators:
                self._generators[sequence.seq_id] = new_generator(request.sampling.seed, sequence.index)
        on_device = all(is_argmax_only(r.sampling, s.constraint) for s, r in zip(sampled, requests))
        prev = None if in_flight is None else in_flight.launched
        launched = self.runner.launch(output.scheduled, greedy=on_device, prev=prev)
        overlapped = on_device and self.async_scheduling
        if overlapped:
            for sequence in sampled:
                sequence.num_pending_tokens += 1
        self.metrics.prompt_tokens.inc(sum(i.num_new_tokens for i in output.scheduled if i.is_prefill))
        self.metrics.steps.labels(overlapped="true" if overlapped else "false").inc()
        return _Step(output, launched, sampled, requests, on_device, overlapped)

    def _read(self, step: _Step) -> None:
        """Wait for a step's tokens (sampling on the host where needed) and hand them to their sequences."""
        if step.overlapped:
            for sequence in step.sampled:
                sequence.num_pending_tokens -= 1
        if not step.sampled:
            step.launched.wait()
            return
        try:
            if step.on_device:
                tokens = [SampledToken(t) for t in step.launched.token_ids()]
            else:
                tokens = self._sample(step.sampled, step.requests, step.launched.logits())
            for request, sequence, token in zip(step.requests, step.sampled, tokens):
                if not sequence.is_finished:  # aborted, or stopped a step ago (that step ran past its end)
                    self._advance(request, sequence, token)
        except Exception as error:  # noqa: BLE001 - fail this step's requests, keep serving
            self._fail_step(step.output, error)

    def _fail_step(self, output: SchedulerOutput, error: Exception) -> None:
        """A failed forward pass, sampling or bookkeeping step fails the requests in it, never the worker."""
        requests = {id(r): r for r in (self._request_of.get(i.sequence.seq_id) for i in output.scheduled) if r}
        log.exception("engine step failed", extra={"request_ids": sorted(r.request_id for r in requests.values())})
        with self._wakeup:
            for request in requests.values():
                if not request.is_finished:
                    self._fail_request(request, f"the model step failed: {type(error).__name__}; see the engine log")

    def _handle_aborts(self) -> None:
        """Finish aborted requests, waiting or running (called with the lock held)."""
        for request in list(self._requests.values()):
            if not request.is_abort_requested or request.is_finished:
                continue
            for sequence in request.sequences:
                if not sequence.is_finished:
                    sequence.abort()
                    self._release(sequence)
            self._complete(request)
        self._retire_finished_locked()

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
        if sequence.output_ids:
            self.metrics.time_per_output_token_seconds.observe(now - sequence.last_token_time)
        elif not any(s.output_ids for s in request.sequences):
            self.metrics.time_to_first_token_seconds.observe(now - request.arrival_time)
        self.metrics.generation_tokens.inc()
        text = sequence.append(token.token_id, now)
        logprobs = ()
        if token.logprob is not None:
            logprobs = (self._position_logprobs(token),)
        if sequence.constraint is not None and not sequence.is_finished:
            sequence.constraint.accept(token.token_id)  # and starts the next step's bitmask in the background
            if sequence.constraint.is_closed:
                text += sequence.end_for_length()
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
            self._outbox.put(request.sink, chunk)
        if sequence.is_finished:
            self._release(sequence)
            if request.is_finished:
                self._complete(request)

    def _position_logprobs(self, token: SampledToken) -> PositionLogprobs:
        text = self.tokenizer.token_text
        chosen = TokenLogprob(token.token_id, text(token.token_id), token.logprob or 0.0)
        return PositionLogprobs(chosen, tuple(TokenLogprob(i, text(i), lp) for i, lp in token.top))

    def _release(self, sequence: Sequence) -> None:
        """Give a finished sequence's KV blocks back and drop its per-sequence state."""
        with self._wakeup:
            self.scheduler.finish(sequence)
        self.runner.release(sequence.seq_id)
        self._generators.pop(sequence.seq_id, None)

    def _complete(self, request: RequestState) -> None:
        """One Complete per choice, sent once all choices are done so each carries the request's final usage."""
        now = time.perf_counter()
        usage = request.usage()
        for sequence in request.sequences:
            assert sequence.finish_reason is not None
            timings = request.timings(sequence, now)
            closed = sequence.constraint is not None and sequence.constraint.was_closed
            self._outbox.put(
                request.sink,
                Complete(sequence.index, sequence.finish_reason, usage, timings, sequence.matched_stop, closed),
            )
        self.metrics.requests.labels(finish_reason=request.sequences[0].finish_reason.value).inc()
        log.info(
            "generate done",
            extra={
                "request_id": request.request_id,
                "finish_reasons": [s.finish_reason.value for s in request.sequences if s.finish_reason],
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "preemptions": sum(s.num_preemptions for s in request.sequences),
                # Choices whose budget ran out inside their constraint and got the grammar's ending.
                "constraint_closed": sum(bool(s.constraint and s.constraint.was_closed) for s in request.sequences),
                "queue_seconds": round(timings.queue_seconds, 4),
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
        self.metrics.requests.labels(finish_reason="error").inc()
        self._outbox.put(request.sink, ErrorEvent("INTERNAL", message))

    def _fail_running(self, message: str) -> None:
        for request in {id(r): r for r in (self._request_of[s.seq_id] for s in self.scheduler.running)}.values():
            if not request.is_finished:
                self._fail_request(request, message)

    def _fail_unschedulable(self) -> None:
        """Nothing runs and the queue's head still cannot start: it can never fit, so say so rather than spin."""
        head = self.scheduler.waiting()[0]
        request = self._request_of[head.seq_id]
        log.error("request does not fit the KV cache", extra={"request_id": request.request_id})
        self._fail_request(request, "the request does not fit the engine's KV cache; raise ENGINE_KV_CACHE_BLOCKS")

    def _retire_finished(self) -> None:
        with self._wakeup:
            self._retire_finished_locked()

    def _retire_finished_locked(self) -> None:
        for request_id, request in list(self._requests.items()):
            if request.is_finished:
                del self._requests[request_id]
                for sequence in request.sequences:
                    self._request_of.pop(sequence.seq_id, None)
