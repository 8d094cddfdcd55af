"""EngineCore: the engine's API in domain terms, independent of gRPC.

It validates and tokenizes requests on the caller's event loop (cheap), hands
them to the engine loop's worker thread, and streams the events back. It can
be used from any asyncio loop, and from several at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import torch

from quartet.services.common.logs import debug_payloads
from quartet.services.engine.engine_loop import EngineLoop
from quartet.services.engine.api.events import Complete, ErrorEvent, Event, ModelInfo
from quartet.services.engine.metrics import EngineMetrics
from quartet.services.engine.model_cache import resolve_model
from quartet.services.engine.runner import create_runner
from quartet.services.engine.api.request import ChatInput, GenerateRequest, TextInput
from quartet.services.engine.runner.base import ModelRunner, RunnerOptions
from quartet.services.engine.sched.scheduler import SchedulerConfig
from quartet.services.engine.sched.sequence import RequestState, new_sequences
from quartet.services.engine.api.sinks import QueueSink
from quartet.services.engine.settings import EngineSettings
from quartet.services.engine.text.tokenizer import load_tokenizer
from quartet.services.engine.text.tokenizer_base import PreparedPrompt, Tokenizer
from quartet.services.engine.api.validation import ModelLimits, check_input, check_request, resolve_max_tokens

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Collect, then move every object alive now (the model, its graphs, the tokenizer's tables) out of
    the garbage collector's reach (``gc.freeze``), as vLLM does after start-up: a full collection while
    serving otherwise walks them all again, and the engine's loop launches no step meanwhile (an H100
    run at 256 concurrent streams saw one 276 ms gap between two decode steps before this; none over
    34 ms after)."""
    gc.collect()
    gc.freeze()


class EngineCore:
    def __init__(
        self,
        *,
        model_id: str,
        tokenizer: Tokenizer,
        runner: ModelRunner,
        scheduler: SchedulerConfig,
        num_threads: int,
        metrics_port: int = 0,
        metrics_host: str = "127.0.0.1",
        async_scheduling: bool = False,
    ) -> None:
        self.model_id = model_id
        self.tokenizer = tokenizer
        self.runner = runner
        info = runner.info
        self.limits = ModelLimits(model_id, info.vocab_size, info.context_length, runner.max_num_seqs)
        self.metrics = EngineMetrics()
        self._loop = EngineLoop(
            runner, tokenizer, scheduler, num_threads=num_threads, metrics=self.metrics,
            async_scheduling=async_scheduling,
        )  # fmt: skip
        self.metrics_port = self.metrics.serve(metrics_port, metrics_host) if metrics_port else 0
        self._seq_lock = threading.Lock()
        self._next_seq_id = 0
        self._closed = False
        self._loop.start()

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> EngineCore:
        """Resolve MODEL_ID (building the bundled cache on first use) and load the model; takes seconds."""
        started = time.perf_counter()
        num_threads = settings.resolved_num_threads()
        torch.set_num_threads(num_threads)
        device = settings.resolved_device()
        model_dir: Path = resolve_model(settings.model_id)
        tokenizer = load_tokenizer(model_dir)
        options = RunnerOptions(
            device=device,
            dtype=settings.resolved_dtype(device),
            max_model_len=settings.max_model_len,
            max_num_seqs=settings.max_num_seqs,
            block_size=settings.block_size,
            num_kv_blocks=settings.kv_cache_blocks,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enable_prefix_caching=settings.enable_prefix_caching,
            cuda_graphs=settings.cuda_graphs,
            weight_format=settings.weight_format,
        )
        runner = create_runner(settings.backend, model_dir, options)
        warm_up = getattr(runner, "warm_up", None)
        if warm_up is not None:  # capture CUDA graphs now, not on the first requests (no-op without them)
            warm_up(runner.info.context_length)
        freeze_startup_heap()
        scheduler = SchedulerConfig(
            max_num_seqs=settings.max_num_seqs,
            max_num_batched_tokens=settings.resolved_max_num_batched_tokens(device),
            max_waiting=settings.max_waiting,
            priority_aging_seconds=settings.priority_aging_seconds,
        )
        log.info(
            "engine ready",
            extra={
                "model_id": settings.model_id,
                "backend": runner.info.backend,
                "device": runner.info.device,
                "dtype": runner.info.dtype,
                "num_threads": num_threads,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return cls(
            model_id=settings.model_id,
            tokenizer=tokenizer,
            runner=runner,
            scheduler=scheduler,
            num_threads=num_threads,
            metrics_port=settings.metrics_port,
            metrics_host=settings.metrics_host,
            async_scheduling=settings.resolved_async_scheduling(device),
        )

    @property
    def async_scheduling(self) -> bool:
        """Whether steps overlap (ENGINE_ASYNC_SCHEDULING); settable between requests (benchmarks compare both)."""
        return self._loop.async_scheduling

    @async_scheduling.setter
    def async_scheduling(self, value: bool) -> None:
        self._loop.async_scheduling = value and self.runner.supports_pending_tokens

    async def close(self) -> None:
        """Abort what is in flight and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._loop.stop)
        self.metrics.close()
        self.runner.close()
        self.tokenizer.close()
        gc.unfreeze()  # what freeze_startup_heap set aside is collectable again (at exit too)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Event]:
        """Stream Chunk events, then one Complete per choice (or one ErrorEvent).

        Raises typed errors (InvalidArgument, NotFound, ResourceExhausted) before
        the first event. Closing the iterator early aborts the request.
        """
        arrival = time.perf_counter()
        check_request(request, self.limits)
        # Raw text gets the tokenizer's special tokens (a BOS where the model has one), as in vLLM's completions.
        prepared = self.tokenizer.prepare(request)  # prompt ids, per-choice output parser, constraint grammar
        prompt_ids = prepared.token_ids
        max_tokens = resolve_max_tokens(request.stopping, len(prompt_ids), self.limits.context_length)
        n = request.sampling.n or 1
        request_id = request.request_id or f"gen-{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        sink = QueueSink(loop, queue)
        state = RequestState(
            request_id=request_id,
            prompt_ids=prompt_ids,
            sampling=request.sampling,
            stopping=request.stopping,
            priority=request.priority,
            sequences=new_sequences(
                first_seq_id=self._next_seq_block(n),
                n=n,
                prompt_ids=prompt_ids,
                max_tokens=max_tokens,
                stopping=request.stopping,
                eos_token_ids=self.tokenizer.eos_token_ids,
                decode=self.tokenizer.decode,
            ),
            sink=sink,
            arrival_time=arrival,
        )
        await self._attach_outputs(state, prepared)
        extra = {"request_id": request_id, "prompt_tokens": len(prompt_ids), "max_tokens": max_tokens, "n": n}
        if debug_payloads():
            extra["prompt"] = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        log.info("generate", extra=extra)
        self._loop.submit(state)
        remaining = n
        try:
            while remaining:
                event = await queue.get()
                yield event
                if isinstance(event, Complete):
                    remaining -= 1
                elif isinstance(event, ErrorEvent):
                    remaining = 0
        finally:
            if remaining:  # the caller stopped listening: free the slot within one step
                self._loop.abort(request_id)
                log.info("generate cancelled by caller", extra={"request_id": request_id})

    async def _attach_outputs(self, state: RequestState, prepared: PreparedPrompt) -> None:
        """Give each choice its grammar matcher and output parser; a bad grammar raises InvalidArgument here."""
        if prepared.grammar is not None:
            # Building the vocabulary index (first use) and compiling a new grammar take milliseconds to
            # seconds: keep them off the event loop. Compiled grammars are cached.
            compiler = await asyncio.to_thread(self.tokenizer.constraint_compiler, self.limits.vocab_size)
            await asyncio.to_thread(compiler.compile, prepared.grammar)
            for sequence in state.sequences:
                sequence.constraint = compiler.new_constraint(
                    prepared.grammar, stop_token_ids=prepared.grammar_stop_ids, budget=sequence.max_tokens
                )
        if prepared.new_parser is not None:
            for sequence in state.sequences:
                sequence.parser = prepared.new_parser()

    def _next_seq_block(self, n: int) -> int:
        """The first of ``n`` consecutive sequence ids; callers on several threads never overlap."""
        with self._seq_lock:
            first = self._next_seq_id
            self._next_seq_id += n
        return first

    async def abort(self, request_id: str) -> bool:
        """Stop a running or waiting request; False if none has that id."""
        return self._loop.abort(request_id)

    async def tokenize(self, prompt: TextInput | ChatInput, *, add_special_tokens: bool = False) -> list[int]:
        check_input(prompt, self.limits.vocab_size)
        return self.tokenizer.encode_input(prompt, add_special_tokens=add_special_tokens)

    async def count_tokens(self, prompt: TextInput | ChatInput) -> int:
        """Tokens the input takes in Generate (raw text with special tokens, chat with its template)."""
        return len(await self.tokenize(prompt, add_special_tokens=True))

    def model_info(self) -> ModelInfo:
        info = self.runner.info
        return ModelInfo(
            model_id=self.model_id,
            context_length=info.context_length,
            vocab_size=info.vocab_size,
            architecture=info.architecture,
            backend=info.backend,
            device=info.device,
            dtype=info.dtype,
            num_running=self._loop.num_running,
            num_waiting=self._loop.num_waiting,
            eos_token_ids=self.tokenizer.eos_token_ids,
        )
