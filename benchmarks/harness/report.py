"""Results out: the printed table, ``metrics.json``, target checks, profiler traces, archives.

An archive is ``archive/<UTC timestamp>-<case>-<speedup>x/`` holding the run's metrics,
table, the case's manifest and any traces: the record of one finished experiment.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.harness.case import Case, Forward, Inputs, Target
from benchmarks.harness.execute import VariantResult

ARCHIVE_DIR = Path(__file__).parent / "archive"


@dataclass(frozen=True, slots=True)
class TargetCheck:
    case: str
    target: Target
    variant: str
    value: float | None
    passed: bool
    margin: str

    def as_dict(self) -> dict:
        t = self.target
        return {"case": self.case, "m": t.m, "metric": t.metric, "min": t.min, "max": t.max, "variant": self.variant,
                "value": self.value, "passed": self.passed, "margin": self.margin, "note": t.note}


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def format_table(results: Iterable[VariantResult]) -> str:
    head = (f"{'case':<18} {'m':>5} {'variant':<16} {'median us':>10} {'p20':>9} {'p80':>9} {'eager us':>9} "
            f"{'GB/s':>7} {'%copy':>6} {'TFLOP/s':>8} {'%mm':>5} {'vs bf16':>7} {'rel err':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.case:<18} {r.m:>5} {r.variant:<16} {r.median_us:>10.2f} {r.p20_us:>9.2f} {r.p80_us:>9.2f} "
            f"{r.eager_us:>9.2f} {r.gbps:>7.0f} {_fmt(r.pct_copy_bw):>6} {r.tflops:>8.1f} {_fmt(r.pct_matmul):>5} "
            f"{_fmt(r.speedup, '.2f'):>7} {r.rel_l2:>8.1e}{'' if r.parity_ok else ' FAIL'}"
        )
    return "\n".join(lines)


def check_targets(case: Case, results: list[VariantResult], extra: dict[tuple[str, int, str], float] | None = None
                  ) -> list[TargetCheck]:
    """Each manifest target against the best passing variant at its ``m`` (or the named one)."""
    checks = []
    for t in case.manifest.targets:
        pool = [r for r in results if r.m == t.m and not r.is_baseline and r.parity_ok
                and (t.variant == "best" or r.variant == t.variant)]
        if not pool:
            checks.append(TargetCheck(case.name, t, t.variant, None, False, "no passing variant measured"))
            continue
        best = min(pool, key=lambda r: r.median_us)
        value = (extra or {}).get((case.name, t.m, t.metric))
        if value is None:
            value = getattr(best, t.metric, None)
        passed = value is not None and (t.min is None or value >= t.min) and (t.max is None or value <= t.max)
        bound = t.min if t.min is not None else t.max
        margin = "-" if value is None or bound is None else f"{value / bound:.2f}x of the bar"
        checks.append(TargetCheck(case.name, t, best.variant, value, passed, margin))
    return checks


def format_targets(checks: list[TargetCheck]) -> str:
    lines = [f"{'case':<18} {'m':>5} {'metric':<22} {'bar':>10} {'measured':>10} {'variant':<16} result"]
    for c in checks:
        t = c.target
        bar = f">= {t.min:g}" if t.min is not None else f"<= {t.max:g}"
        lines.append(f"{c.case:<18} {t.m:>5} {t.metric:<22} {bar:>10} {_fmt(c.value, '.2f'):>10} {c.variant:<16} "
                     f"{'PASS' if c.passed else 'MISS'} ({c.margin})")
    return "\n".join(lines)


def write_metrics(path: Path, meta: dict, results: list[VariantResult], checks: list[TargetCheck]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "results": [r.as_dict() for r in results], "targets": [c.as_dict() for c in checks]}
    path.write_text(json.dumps(doc, indent=1, default=str))


def profile_trace(forward: Forward, inputs: Inputs, path: Path, calls: int = 3) -> Path:
    """A gzipped Chrome trace (torch.profiler, CPU + CUDA) of a few calls."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    forward(inputs)
    with profile(activities=activities) as prof:
        for _ in range(calls):
            forward(inputs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    raw = path.with_suffix("")
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()
    return path


def speedup_label(results: list[VariantResult]) -> str:
    """Geometric mean over ``m`` of baseline time over the best passing variant's time."""
    ratios = []
    for m in sorted({r.m for r in results}):
        at_m = [r for r in results if r.m == m]
        base = next((r for r in at_m if r.is_baseline), None)
        good = [r for r in at_m if not r.is_baseline and r.parity_ok]
        if base and good:
            ratios.append(base.median_us / min(r.median_us for r in good))
    return f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}x" if ratios else "na"


def archive(case: Case, results: list[VariantResult], files: Iterable[Path], root: Path = ARCHIVE_DIR) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = root / f"{stamp}-{case.name}-{speedup_label(results)}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(case.path / "manifest.yaml", folder / "manifest.yaml")
    (folder / "results.json").write_text(json.dumps([r.as_dict() for r in results], indent=1))
    (folder / "table.txt").write_text(format_table(results) + "\n")
    for f in files:
        if f.is_file():
            shutil.copy(f, folder / f.name)
    return folder
