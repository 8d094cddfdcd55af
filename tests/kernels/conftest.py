"""Kernel tests run on CUDA when present, else in Triton's CPU interpreter.

``TRITON_INTERPRET`` must be set before any ``@triton.jit`` decorator runs, so it is set
here at import time; kernel modules another test folder imported earlier (compiled mode)
are dropped from ``sys.modules`` so the test modules re-import them interpreted.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

ON_CUDA = torch.cuda.is_available()
# Fixed launch configs: autotuning every test shape would compile each config for each one.
os.environ.setdefault("QUARTET_KERNELS_AUTOTUNE", "0")
if not ON_CUDA and os.environ.get("TRITON_INTERPRET") is None:
    os.environ["TRITON_INTERPRET"] = "1"
    for name in [m for m in sys.modules if m.startswith(("quartet.kernels.mxfp4.", "benchmarks.harness", "quartet.kernels.fused."))]:
        del sys.modules[name]

DEVICE = torch.device("cuda" if ON_CUDA else "cpu")


@pytest.fixture
def device() -> torch.device:
    return DEVICE


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh, differently seeded generator per test: inputs are random, never fixed arrays."""
    g = torch.Generator(device=DEVICE)
    g.manual_seed(int.from_bytes(os.urandom(4), "little"))
    return g

