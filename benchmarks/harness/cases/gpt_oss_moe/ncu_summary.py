"""The figures that say what bounds a kernel, from an Nsight Compute raw-page CSV.

    ncu -i report.ncu-rep --page raw --csv > raw.csv
    python3 -m benchmarks.harness.cases.gpt_oss_moe.ncu_summary raw.csv

Per profiled launch: time, DRAM and SM throughput (% of peak), issue-slot use, registers and
occupancy, shared-memory bank conflicts, the busiest pipes, and the warp stall reasons
ranked by cycles per issued instruction (what the warps waited on between issues).
"""

from __future__ import annotations

import csv
import sys

_TO_US = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}
_FIXED = (
    ("time us", "gpu__time_duration.sum", 1.0),
    ("dram % peak", "dram__throughput.avg.pct_of_peak_sustained_elapsed", 1.0),
    ("sm % peak", "sm__throughput.avg.pct_of_peak_sustained_elapsed", 1.0),
    ("issue slots % active", "sm__inst_issued.avg.pct_of_peak_sustained_active", 1.0),
    ("registers/thread", "launch__registers_per_thread", 1.0),
    ("shared bytes/block", "launch__shared_mem_per_block_static", 1.0),
    ("dyn shared bytes/block", "launch__shared_mem_per_block_dynamic", 1.0),
    ("occupancy limit regs", "launch__occupancy_limit_registers", 1.0),
    ("occupancy limit smem", "launch__occupancy_limit_shared_mem", 1.0),
    ("achieved occupancy %", "sm__warps_active.avg.pct_of_peak_sustained_active", 1.0),
    ("grid size", "launch__grid_size", 1.0),
    ("smem ld bank conflicts", "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum", 1.0),
    ("smem st bank conflicts", "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum", 1.0),
    ("smem ld wavefronts", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum", 1.0),
    ("smem st wavefronts", "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum", 1.0),
    ("warp cycles / issue", "smsp__average_warp_latency_per_inst_issued.ratio", 1.0),
    ("instructions", "smsp__inst_executed.sum", 1.0),
)
_STALL = "smsp__average_warps_issue_stalled_"
_PIPE = "sm__inst_executed_pipe_"


def _num(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def summarize(rows: list[dict[str, str]], units: dict[str, str]) -> list[str]:
    """``units``: the raw page's second line (ncu picks each metric's unit, ns to ms for times)."""
    lines = []
    for row in rows:
        lines.append(f"== {row.get('Kernel Name', '?')[:60]} (id {row.get('ID', '?')})")
        for label, key, factor in _FIXED:
            value = _num(row.get(key, ""))
            if value is not None:
                factor *= _TO_US.get(units.get(key, ""), 1.0)
                lines.append(f"  {label:<26} {value * factor:12.2f}")
        stalls = [(k[len(_STALL):].replace("_per_issue_active.ratio", ""), _num(v)) for k, v in row.items()
                  if k.startswith(_STALL) and k.endswith("_per_issue_active.ratio") and _num(v)]
        lines.append("  stalls (warp cycles per issued instruction): " + ", ".join(
            f"{name} {value:.2f}" for name, value in sorted(stalls, key=lambda s: -s[1])[:9]))
        pipes = [(k[len(_PIPE):], _num(v)) for k, v in row.items()
                 if k.startswith(_PIPE) and k.endswith(".avg.pct_of_peak_sustained_active") and _num(v)]
        lines.append("  pipes (% of peak, active): " + ", ".join(
            f"{name.replace('.avg.pct_of_peak_sustained_active', '')} {value:.1f}"
            for name, value in sorted(pipes, key=lambda s: -s[1])[:8]))
    return lines


def main(argv: list[str] | None = None) -> int:
    path = (argv or sys.argv[1:])[0]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    # The raw page's second line holds units, not a launch.
    launches = [r for r in rows if _num(r.get("ID", "")) is not None]
    units = next((r for r in rows if _num(r.get("ID", "")) is None), {})
    print("\n".join(summarize(launches, units)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
