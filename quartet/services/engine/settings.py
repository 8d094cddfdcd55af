"""Engine settings, read once from the environment at the entry point."""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

from pydantic import AliasChoices, Field, field_validator

from quartet.services.common.errors import InvalidArgument
from quartet.services.common.settings import DEFAULT_ENGINE_ADDRESS, ServiceSettings
from quartet.services.engine.model_cache import BUNDLED_MODEL_ID

BACKENDS = ("native", "transformers")


def physical_cores() -> int:
    """Physical cores available to this process: hyperthreads only slow fp32 matmuls down."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    try:
        siblings: set[str] = set()
        for cpu in os.sched_getaffinity(0):
            path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
            with open(path) as handle:
                siblings.add(handle.read().strip())
        return max(1, min(available, len(siblings)))
    except (OSError, AttributeError):
        return max(1, available)


class EngineSettings(ServiceSettings):
    """Environment: MODEL_ID, ENGINE, ENGINE_LISTEN, ENGINE_DEVICE, ENGINE_DTYPE, ENGINE_MAX_MODEL_LEN,
    ENGINE_NUM_THREADS, ENGINE_MAX_NUM_SEQS, ENGINE_MAX_WAITING, ENGINE_MAX_NUM_BATCHED_TOKENS, ENGINE_BLOCK_SIZE,
    ENGINE_KV_CACHE_BLOCKS, GPU_MEMORY_UTILIZATION, ENGINE_ENABLE_PREFIX_CACHING, ENGINE_PRIORITY_AGING_SECONDS,
    ENGINE_CUDA_GRAPHS, ENGINE_ASYNC_SCHEDULING, ENGINE_METRICS_PORT, ENGINE_WEIGHT_FORMAT."""

    model_id: str = Field(default=BUNDLED_MODEL_ID, validation_alias=AliasChoices("MODEL_ID", "model_id"))
    backend: str = Field(default="native", validation_alias=AliasChoices("ENGINE", "backend"))
    listen: str = Field(default=DEFAULT_ENGINE_ADDRESS, validation_alias=AliasChoices("ENGINE_LISTEN", "listen"))
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", validation_alias=AliasChoices("ENGINE_DEVICE", "device")
    )
    # float32 by default: bfloat16 matmuls are several times slower than fp32 on most CPUs.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", validation_alias=AliasChoices("ENGINE_DTYPE", "dtype")
    )
    # 0 means the model's own context length.
    max_model_len: int = Field(default=0, ge=0, validation_alias=AliasChoices("ENGINE_MAX_MODEL_LEN", "max_model_len"))
    # 0 means one thread per physical core.
    num_threads: int = Field(default=0, ge=0, validation_alias=AliasChoices("ENGINE_NUM_THREADS", "num_threads"))
    # Sequences decoded together in one batched step.
    max_num_seqs: int = Field(
        default=8, ge=1, le=256, validation_alias=AliasChoices("ENGINE_MAX_NUM_SEQS", "max_num_seqs")
    )
    # Requests allowed to wait for a slot before new ones get RESOURCE_EXHAUSTED.
    max_waiting: int = Field(default=256, ge=0, validation_alias=AliasChoices("ENGINE_MAX_WAITING", "max_waiting"))
    # Tokens computed in one step (decodes + prompt chunks); 0 = 512 on CPU (a chunk stalls decodes for ~1 s
    # there), 8192 on CUDA.
    max_num_batched_tokens: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("ENGINE_MAX_NUM_BATCHED_TOKENS", "max_num_batched_tokens")
    )
    # Token slots per KV block, and blocks in the pool (0 = as many as memory allows: GPU_MEMORY_UTILIZATION of
    # the GPU, or 512 MiB on CPU).
    block_size: int = Field(default=16, ge=1, le=256, validation_alias=AliasChoices("ENGINE_BLOCK_SIZE", "block_size"))
    kv_cache_blocks: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("ENGINE_KV_CACHE_BLOCKS", "kv_cache_blocks")
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        validation_alias=AliasChoices("GPU_MEMORY_UTILIZATION", "gpu_memory_utilization"),
    )
    enable_prefix_caching: bool = Field(
        default=True, validation_alias=AliasChoices("ENGINE_ENABLE_PREFIX_CACHING", "enable_prefix_caching")
    )
    # A waiting request ranks one priority level higher per this many seconds of waiting (no starvation).
    priority_aging_seconds: float = Field(
        default=5.0, gt=0.0, validation_alias=AliasChoices("ENGINE_PRIORITY_AGING_SECONDS", "priority_aging_seconds")
    )
    # Decode (per batch-size bucket) and lone prompts up to 2048 tokens (per length bucket) through CUDA
    # graphs, captured at start-up; CUDA only, ignored on CPU. Off: every step runs eagerly (debugging).
    cuda_graphs: bool = Field(default=True, validation_alias=AliasChoices("ENGINE_CUDA_GRAPHS", "cuda_graphs"))
    # Launch each step before reading the last one's tokens, when every row takes its argmax (engine_loop.py).
    # Unset: on with CUDA, where it hides the host's per-step work behind the GPU's; off on CPU, where the
    # forward pass runs on the same cores as the host's work and only the wasted step past a stop would show.
    async_scheduling: bool | None = Field(
        default=None, validation_alias=AliasChoices("ENGINE_ASYNC_SCHEDULING", "async_scheduling")
    )
    # Dense linear weights: mxfp4 (quantized at load, the MXFP4 kernels) or bf16 (dense, in ENGINE_DTYPE);
    # int8 (CPU): per-channel int8 weights, the fast CPU decode (docs/perf-log/cpu-engine.md states its error).
    # auto = mxfp4 on CUDA; on CPU int8 for the dense Llama family, dense for gpt-oss. gpt-oss experts are
    # MXFP4 either way.
    weight_format: Literal["auto", "mxfp4", "bf16", "int8"] = Field(
        default="auto", validation_alias=AliasChoices("ENGINE_WEIGHT_FORMAT", "weight_format")
    )
    # Port of the Prometheus /metrics endpoint; 0 = off.
    metrics_port: int = Field(
        default=0, ge=0, le=65535, validation_alias=AliasChoices("ENGINE_METRICS_PORT", "metrics_port")
    )
    # Where it binds: loopback unless asked (compose binds all interfaces inside the container and
    # publishes the port on the host's loopback only). The endpoint has no authentication.
    metrics_host: str = Field(
        default="127.0.0.1", min_length=1, validation_alias=AliasChoices("ENGINE_METRICS_HOST", "metrics_host")
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        value = value.strip().lower()
        if value == "vllm":
            if importlib.util.find_spec("vllm") is not None:  # the GPU image (backends/vllm_runner.py)
                return value
            raise ValueError(
                "ENGINE=vllm needs the GPU image (the vllm extra and a CUDA device); "
                "this installation supports ENGINE=native (default) or ENGINE=transformers"
            )
        if value not in BACKENDS:
            raise ValueError(
                f"ENGINE={value!r} is unknown; use one of {', '.join(BACKENDS)} (or vllm in the GPU image)"
            )
        return value

    def resolved_device(self) -> str:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise InvalidArgument(
                "ENGINE_DEVICE=cuda but no CUDA device is visible; use ENGINE_DEVICE=cpu or auto", field="ENGINE_DEVICE"
            )
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def resolved_dtype(self, device: str) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device.startswith("cuda") else "float32"

    def resolved_async_scheduling(self, device: str) -> bool:
        return device.startswith("cuda") if self.async_scheduling is None else self.async_scheduling

    def resolved_num_threads(self) -> int:
        return self.num_threads or physical_cores()

    def resolved_max_num_batched_tokens(self, device: str) -> int:
        tokens = self.max_num_batched_tokens or (8192 if device.startswith("cuda") else 512)
        return max(tokens, self.max_num_seqs)
