"""ENGINE=vllm: vLLM's ``AsyncLLMEngine`` behind the engine's interface (GPU image only).

vLLM brings its own scheduler, paged KV cache, CUDA graphs, sampler and
structured outputs (xgrammar too); this adapter keeps everything the client
sees identical to the native engine: our validation, our tokenizer and prompt
formats (chat templates, the tool prompt, Harmony with its prefills), our
grammar mapping of constraints (``constraints.spec``), and our output parsers for
typed deltas. vLLM gets token ids and a ``SamplingParams`` and streams deltas
(``RequestOutputKind.DELTA``).

vLLM is never installed in CI or on the CPU machines (the ``vllm`` extra pulls a
CUDA torch), so this file imports it lazily; its pure conversions are tested
everywhere, the engine itself only where vllm is installed. API as of vLLM 0.12
(``structured_outputs=StructuredOutputsParams(...)`` replaced ``guided_*``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from quartet.services.engine.constraints.spec import GrammarKind, GrammarSpec
from quartet.services.engine.api.events import (
    Complete,
    ErrorEvent,
    Event,
    FinishReason,
    ModelInfo,
    PositionLogprobs,
    Timings,
    TokenLogprob,
    Usage,
)
from quartet.services.engine.text.output_parser import OutputParser, typed_chunks
from quartet.services.engine.api.request import ChatInput, GenerateRequest, TextInput
from quartet.services.engine.settings import EngineSettings
from quartet.services.engine.text.tokenizer import load_tokenizer
from quartet.services.engine.text.tokenizer_base import PreparedPrompt, Tokenizer
from quartet.services.engine.api.validation import ModelLimits, check_input, check_request, resolve_max_tokens

log = logging.getLogger(__name__)

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}


def sampling_kwargs(request: GenerateRequest, *, max_tokens: int) -> dict:
    """vLLM ``SamplingParams`` keyword arguments for ``request`` (defaults are vLLM's, which are OpenAI's)."""
    s, stop = request.sampling, request.stopping
    kwargs: dict = {
        "n": s.n or 1,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "max_tokens": max_tokens,
        "stop": list(stop.stop),
        "stop_token_ids": list(stop.stop_token_ids),
        "ignore_eos": stop.ignore_eos,
        "skip_special_tokens": True,
    }
    optional = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "seed": s.seed,
        "repetition_penalty": s.repetition_penalty,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if s.top_k:  # 0 and unset both mean "no limit", vLLM's default
        kwargs["top_k"] = s.top_k
    if s.logit_bias:
        kwargs["logit_bias"] = dict(s.logit_bias)
    if s.logprobs:
        kwargs["logprobs"] = s.top_logprobs  # vLLM returns the chosen token's logprob plus this many alternatives
    return kwargs


def structured_outputs_kwargs(grammar: GrammarSpec | None) -> dict | None:
    """``StructuredOutputsParams`` keyword arguments for the grammar our tokenizer derived from the constraint."""
    if grammar is None:
        return None
    if grammar.kind is GrammarKind.JSON_SCHEMA:
        return {"json": grammar.source}
    if grammar.kind is GrammarKind.REGEX:
        return {"regex": grammar.source}
    return {"grammar": grammar.source}


def finish_reason(reason: str | None) -> FinishReason:
    return _FINISH.get(reason or "", FinishReason.STOP)


def position_logprobs(
    token_ids: Sequence[int], entries: Sequence[Mapping[int, object]] | None, token_text, num_top: int
) -> tuple[PositionLogprobs, ...]:
    """Our logprobs from vLLM's per-position ``{token_id: Logprob(logprob, rank, decoded_token)}``.

    Each dict holds the top ``num_top`` tokens (ranks 1..num_top) and the chosen one, whatever its rank.
    """
    if not entries:
        return ()
    out = []
    for token_id, entry in zip(token_ids, entries):
        chosen = entry.get(token_id)
        top = sorted((item for item in entry.items() if item[1].rank <= num_top), key=lambda item: item[1].rank)
        out.append(
            PositionLogprobs(
                TokenLogprob(token_id, token_text(token_id), float(chosen.logprob) if chosen is not None else 0.0),
                tuple(TokenLogprob(tid, token_text(tid), float(lp.logprob)) for tid, lp in top),
            )
        )
    return tuple(out)


@dataclass(slots=True)
class _Choice:
    """Our bookkeeping for one of vLLM's outputs (vLLM keeps the real state)."""

    parser: OutputParser | None
    num_top: int = 0
    num_tokens: int = 0
    first_token_time: float = 0.0
    last_token_time: float = 0.0
    finish_reason: FinishReason | None = None
    matched_stop: str = ""


class VllmEngine:
    """EngineCore's methods over ``vllm.AsyncLLMEngine``."""

    def __init__(self, engine, *, model_id: str, tokenizer: Tokenizer, limits: ModelLimits, dtype: str) -> None:
        self.engine = engine
        self.model_id = model_id
        self.tokenizer = tokenizer
        self.limits = limits
        self._dtype = dtype
        self._running: set[str] = set()  # request ids in flight, for Abort and model_info

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> VllmEngine:
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        from quartet.services.engine.model_cache import resolve_model

        model_dir = resolve_model(settings.model_id)
        args = AsyncEngineArgs(
            model=str(model_dir),
            tokenizer=str(model_dir),
            served_model_name=settings.model_id,
            max_model_len=settings.max_model_len or None,
            max_num_seqs=settings.max_num_seqs,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enable_prefix_caching=settings.enable_prefix_caching,
            dtype="auto" if settings.dtype == "auto" else settings.dtype,
        )
        engine = AsyncLLMEngine.from_engine_args(args)
        config = engine.model_config if hasattr(engine, "model_config") else None
        context_length = int(getattr(config, "max_model_len", 0) or settings.max_model_len or 4096)
        vocab_size = int(config.get_vocab_size()) if config is not None else 0
        tokenizer = load_tokenizer(model_dir)
        limits = ModelLimits(
            settings.model_id, vocab_size or tokenizer.vocab_size, context_length, settings.max_num_seqs
        )
        log.info("vllm engine ready", extra={"model_id": settings.model_id, "context_length": context_length})
        return cls(engine, model_id=settings.model_id, tokenizer=tokenizer, limits=limits, dtype=str(settings.dtype))

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Event]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        arrival = time.perf_counter()
        check_request(request, self.limits)
        prepared: PreparedPrompt = self.tokenizer.prepare(request)
        max_tokens = resolve_max_tokens(request.stopping, len(prepared.token_ids), self.limits.context_length)
        structured = structured_outputs_kwargs(prepared.grammar)
        params = SamplingParams(
            **sampling_kwargs(request, max_tokens=max_tokens),
            structured_outputs=StructuredOutputsParams(**structured) if structured else None,
            output_kind=RequestOutputKind.DELTA,
        )
        request_id = request.request_id or f"gen-{uuid.uuid4().hex}"
        n = request.sampling.n or 1
        num_top = request.sampling.top_logprobs
        choices = [_Choice(prepared.new_parser() if prepared.new_parser else None, num_top) for _ in range(n)]
        self._running.add(request_id)
        first_scheduled = 0.0
        finished = False
        try:
            stream = self.engine.generate({"prompt_token_ids": prepared.token_ids}, params, request_id)
            async for output in stream:
                now = time.perf_counter()
                first_scheduled = first_scheduled or now
                for completion in output.outputs:
                    for event in self._chunks(choices, completion, len(prepared.token_ids), now):
                        yield event
                if output.finished:
                    break
            finished = True
            usage = Usage(len(prepared.token_ids), sum(c.num_tokens for c in choices))
            now = time.perf_counter()
            first = min((c.first_token_time for c in choices if c.first_token_time), default=0.0)
            for index, choice in enumerate(choices):
                span = choice.last_token_time - choice.first_token_time
                timings = Timings(
                    queue_seconds=max(0.0, first_scheduled - arrival) if first_scheduled else 0.0,
                    time_to_first_token_seconds=max(0.0, first - arrival) if first else 0.0,
                    decode_tokens_per_second=(choice.num_tokens - 1) / span if span > 0 else 0.0,
                    total_seconds=now - arrival,
                )
                yield Complete(index, choice.finish_reason or FinishReason.STOP, usage, timings, choice.matched_stop)
        except Exception as error:  # noqa: BLE001 - vLLM's engine errors become one Error event
            if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
                raise
            log.exception("vllm generate failed", extra={"request_id": request_id})
            finished = True
            yield ErrorEvent("INTERNAL", f"the vLLM engine failed: {type(error).__name__}; see the engine log")
        finally:
            self._running.discard(request_id)
            if not finished:  # the caller stopped listening
                await self.engine.abort(request_id)

    def _chunks(self, choices: list[_Choice], completion, num_prompt_tokens: int, now: float) -> list[Event]:
        choice = choices[completion.index]
        token_ids = list(completion.token_ids)
        if not token_ids and completion.finish_reason is None:
            return []
        choice.first_token_time = choice.first_token_time or now
        choice.last_token_time = now
        choice.num_tokens += len(token_ids)
        is_finished = completion.finish_reason is not None
        reason = finish_reason(completion.finish_reason) if is_finished else None
        if is_finished and isinstance(completion.stop_reason, str):
            choice.matched_stop = completion.stop_reason
        usage = Usage(num_prompt_tokens, sum(c.num_tokens for c in choices))
        logprobs = position_logprobs(token_ids, completion.logprobs, self.tokenizer.token_text, choice.num_top)
        events: list[Event] = []
        # vLLM's delta text covers all of this output's new tokens: it goes with the last one.
        for i, token_id in enumerate(token_ids):
            last = i == len(token_ids) - 1
            chunks, reason_now = typed_chunks(
                choice.parser,
                index=completion.index,
                token_id=token_id,
                text=completion.text if last else "",
                usage=usage,
                logprobs=logprobs[i : i + 1],
                is_finished=is_finished and last,
                finish_reason=reason,
            )
            if last:
                reason = reason_now
            events.extend(chunks)
        if is_finished:
            choice.finish_reason = reason
        return events

    async def abort(self, request_id: str) -> bool:
        found = request_id in self._running
        await self.engine.abort(request_id)
        return found

    async def tokenize(self, prompt: TextInput | ChatInput, *, add_special_tokens: bool = False) -> list[int]:
        check_input(prompt, self.limits.vocab_size)
        return self.tokenizer.encode_input(prompt, add_special_tokens=add_special_tokens)

    async def count_tokens(self, prompt: TextInput | ChatInput) -> int:
        return len(await self.tokenize(prompt, add_special_tokens=True))

    def model_info(self) -> ModelInfo:
        return ModelInfo(
            model_id=self.model_id,
            context_length=self.limits.context_length,
            vocab_size=self.limits.vocab_size,
            architecture="vllm",
            backend="vllm",
            device="cuda",
            dtype=self._dtype,
            num_running=len(self._running),
            num_waiting=0,  # vLLM does not expose its queue per request; running counts every accepted request
            eos_token_ids=self.tokenizer.eos_token_ids,
        )

    async def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
        self.tokenizer.close()
