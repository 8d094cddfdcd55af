"""Engine backends behind one interface, chosen by ENGINE.

``native`` (default) and ``transformers`` are model runners inside our own
``EngineCore`` (scheduler, KV cache, sampler, constraints). ``vllm`` replaces the
whole core with vLLM's ``AsyncLLMEngine`` (``vllm_runner.VllmEngine``), keeping our
tokenizer, prompt formats, validation and typed deltas. Both expose the same
methods the gRPC servicer calls (``GenerationEngine``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from quartet.services.engine.api.events import Event, ModelInfo
from quartet.services.engine.api.request import ChatInput, GenerateRequest, TextInput
from quartet.services.engine.settings import EngineSettings
from quartet.services.engine.api.validation import ModelLimits


class GenerationEngine(Protocol):
    """What the servicer needs from an engine."""

    model_id: str
    limits: ModelLimits

    def generate(self, request: GenerateRequest) -> AsyncIterator[Event]: ...

    async def abort(self, request_id: str) -> bool: ...

    async def tokenize(self, prompt: TextInput | ChatInput, *, add_special_tokens: bool = False) -> list[int]: ...

    async def count_tokens(self, prompt: TextInput | ChatInput) -> int: ...

    def model_info(self) -> ModelInfo: ...

    async def close(self) -> None: ...


async def create_engine(settings: EngineSettings) -> GenerationEngine:
    """The engine ENGINE names; loading the model takes seconds (minutes for vLLM on a GPU)."""
    if settings.backend == "vllm":
        from quartet.services.engine.backends.vllm_runner import VllmEngine

        # vLLM's async engine binds to the running event loop: build it here, not in a thread.
        return VllmEngine.from_settings(settings)
    from quartet.services.engine.core import EngineCore

    return await asyncio.to_thread(EngineCore.from_settings, settings)
