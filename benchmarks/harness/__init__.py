"""The kernel harness: cases, cached deterministic inputs, ``execute_variant``, metrics, traces, archives.

Typical use (what ``python -m benchmarks.kernels`` does)::

    case = load_case("dense_28672x8192")
    exp = Experiment(case, m=1, device=torch.device("cuda"), ceilings=measure_ceilings(dev))
    exp.execute_variant("torch_bf16", baseline_forward, is_baseline=True)
    exp.execute_variant("gemv_dot_scaled", forward)
"""

from benchmarks.harness.case import Case, Manifest, Target, Work, list_cases, load_case
from benchmarks.harness.ceilings import Ceilings, measure_ceilings
from benchmarks.harness.execute import Experiment, VariantResult
from benchmarks.harness.report import archive, check_targets, format_table, format_targets, profile_trace, write_metrics

__all__ = [
    "Case", "Ceilings", "Experiment", "Manifest", "Target", "VariantResult", "Work", "archive", "check_targets",
    "format_table", "format_targets", "list_cases", "load_case", "measure_ceilings", "profile_trace", "write_metrics",
]
