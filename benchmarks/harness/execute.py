"""``Experiment.execute_variant(label, forward)``: time one implementation, check it against the baseline.

An experiment is one case at one ``m`` on one device: it loads the cached inputs, builds
rotation sets large enough that the weights do not stay in L2, and runs the baseline
first; every later variant is timed the same way and compared with the baseline's output
on the first input set (relative L2 error and max error over max |baseline|).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch

from benchmarks.harness.case import Case, Forward, Inputs
from benchmarks.harness.ceilings import Ceilings
from benchmarks.harness.inputs import case_inputs
from benchmarks.harness.timing import time_calls

log = logging.getLogger(__name__)

ROTATE_L2_MULTIPLE = 2.0
MAX_SETS = 48


@dataclass(frozen=True, slots=True)
class VariantResult:
    case: str
    m: int
    variant: str
    is_baseline: bool
    median_us: float
    p20_us: float
    p80_us: float
    eager_us: float
    bytes: int
    flops: int
    gbps: float
    tflops: float
    pct_copy_bw: float | None
    pct_matmul: float | None
    speedup: float | None
    rel_l2: float
    max_rel: float
    parity_ok: bool
    input_sets: int

    def as_dict(self) -> dict:
        return asdict(self)


def _l2_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20))


class Experiment:
    def __init__(self, case: Case, m: int, device: torch.device, ceilings: Ceilings | None = None,
                 *, samples: int = 25, use_graph: bool = True) -> None:
        self.case, self.m, self.device, self.ceilings = case, m, device, ceilings
        self.samples, self.use_graph = samples, use_graph
        self.inputs: Inputs = case_inputs(case, m, device)
        self.sets: list[Inputs] = [self.inputs]
        self.baseline: VariantResult | None = None
        self.reference: torch.Tensor | None = None
        self.results: list[VariantResult] = []
        self.errors: dict[str, str] = {}

    def _ensure_sets(self, bytes_per_call: int) -> None:
        wanted = math.ceil(ROTATE_L2_MULTIPLE * _l2_bytes(self.device) / max(1, bytes_per_call))
        wanted = max(1, min(MAX_SETS, wanted))
        while len(self.sets) < wanted:
            self.sets.append(self.case.model.rotate(self.inputs, len(self.sets)))

    def execute_variant(self, label: str, forward: Forward, *, is_baseline: bool = False) -> VariantResult:
        """Warm up, time (median, 20th/80th percentiles) and check parity against the baseline."""
        if not is_baseline and self.reference is None:
            raise RuntimeError("execute the baseline first: parity needs its output")
        work = self.case.model.work(self.m, label)
        self._ensure_sets(work.bytes_read)
        out = forward(self.sets[0]).float()
        if is_baseline:
            self.reference = out
        rel_l2, max_rel = _errors(out, self.reference)
        calls = [(lambda s=s: forward(s)) for s in self.sets]
        t = time_calls(calls, samples=self.samples, use_graph=self.use_graph)
        seconds = t.median_us * 1e-6
        gbps = work.bytes / seconds / 1e9
        tflops = work.flops / seconds / 1e12
        c = self.ceilings
        result = VariantResult(
            case=self.case.name, m=self.m, variant=label, is_baseline=is_baseline,
            median_us=t.median_us, p20_us=t.p20_us, p80_us=t.p80_us, eager_us=t.eager_us,
            bytes=work.bytes, flops=work.flops, gbps=gbps, tflops=tflops,
            pct_copy_bw=100 * gbps / c.copy_gbps if c else None,
            pct_matmul=100 * tflops / c.matmul_tflops if c else None,
            speedup=self.baseline.median_us / t.median_us if self.baseline else 1.0 if is_baseline else None,
            rel_l2=rel_l2, max_rel=max_rel,
            parity_ok=bool(torch.isfinite(out).all()) and rel_l2 <= self.case.manifest.tolerance,
            input_sets=len(self.sets),
        )
        if is_baseline:
            self.baseline = result
        self.results.append(result)
        return result

    def run_all(self) -> list[VariantResult]:
        """The model's baseline, then each of its variants at this ``m``."""
        label, forward = self.case.model.baseline(self.m)
        self.execute_variant(label, forward, is_baseline=True)
        for name, fwd in self.case.model.variants(self.m).items():
            try:
                self.execute_variant(name, fwd)
            except Exception as exc:  # one broken variant (say, a compiler error) must not hide the others
                self.errors[name] = f"{type(exc).__name__}: {exc}"
                log.error("variant failed", extra={"case": self.case.name, "m": self.m, "variant": name,
                                                   "error": self.errors[name][:500]})
        return self.results


def _errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    if out.shape != ref.shape:
        raise ValueError(f"variant output {tuple(out.shape)} does not match the baseline's {tuple(ref.shape)}")
    diff = (out - ref).double()
    ref_norm = ref.double().norm().item()
    ref_max = ref.double().abs().max().item()
    rel_l2 = diff.norm().item() / ref_norm if ref_norm else float(diff.norm().item())
    max_rel = diff.abs().max().item() / ref_max if ref_max else float(diff.abs().max().item())
    return (rel_l2 if math.isfinite(rel_l2) else math.inf), (max_rel if math.isfinite(max_rel) else math.inf)
