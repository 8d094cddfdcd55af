"""The two measured ceilings every result is compared with: copy bandwidth and bf16 matmul rate.

Copy bandwidth counts bytes read plus bytes written of a large device-to-device copy (far
larger than L2), the usual "achievable DRAM bandwidth" of a GPU; the matmul rate is a
square bf16 product through torch (cuBLAS) on random data.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass

import torch

from benchmarks.harness.timing import _events_ms


@dataclass(frozen=True, slots=True)
class Ceilings:
    copy_gbps: float
    matmul_tflops: float
    copy_bytes: int
    matmul_n: int

    def as_dict(self) -> dict:
        return asdict(self)


def measure_copy_gbps(device: torch.device, nbytes: int = 1 << 30, samples: int = 15) -> float:
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    ms = statistics.median(_events_ms(lambda: dst.copy_(src)) for _ in range(samples))
    return 2 * nbytes / (ms * 1e-3) / 1e9


def measure_matmul_tflops(device: torch.device, n: int = 8192, samples: int = 10) -> float:
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    a = torch.randn((n, n), generator=gen, device=device, dtype=torch.bfloat16)
    b = torch.randn((n, n), generator=gen, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    ms = statistics.median(_events_ms(lambda: a @ b) for _ in range(samples))
    return 2 * n**3 / (ms * 1e-3) / 1e12


def measure_ceilings(device: torch.device) -> Ceilings:
    if device.type != "cuda":
        raise RuntimeError("ceilings are measured on a CUDA device")
    copy = measure_copy_gbps(device)
    matmul = measure_matmul_tflops(device)
    torch.cuda.empty_cache()
    return Ceilings(copy_gbps=copy, matmul_tflops=matmul, copy_bytes=1 << 30, matmul_n=8192)


def probe_start(shapes: str) -> tuple[torch.device, float, list[tuple[int, int]]]:
    """The common start of a probe script (``layout_compare``, ``stream_compare``): fixed launches (no
    autotuning), the CUDA device and its copy bandwidth (printed), and ``shapes`` ("NxK,...") parsed."""
    os.environ.setdefault("QUARTET_KERNELS_AUTOTUNE", "0")
    device = torch.device("cuda")
    copy_gbps = measure_copy_gbps(device)
    print(f"{torch.cuda.get_device_name()}; copy {copy_gbps:.0f} GB/s")
    parsed = [tuple(int(v) for v in s.split("x")) for s in shapes.split(",") if s]
    return device, copy_gbps, parsed  # type: ignore[return-value]
