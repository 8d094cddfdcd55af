#!/usr/bin/env bash
# Nsight Compute on the MoE grouped path's two kernels at M tokens (default 256: 1024 pairs),
# the default tiles (full set) and VARIANT (a few sections; run 3 profiled "run2" as the full set
# and bf16x2_prefetch as VARIANT, then run2 was the default); then every variant timed.
# Writes the reports, raw pages and the kernels' SASS to $OUT; prints a summary.
set -u
M=${1:-256}
VARIANT=${2:-run2}
OUT=${OUT:-/tmp/ncu_grouped}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
run_ncu() {  # name variant ncu-set-args...
    local name=$1 variant=$2; shift 2
    ncu "$@" -k 'regex:_gate_up_kernel|_down_kernel' --launch-skip 2 --launch-count 2 -o "$OUT/$name" -f \
        python3 -m benchmarks.harness.cases.gpt_oss_moe.profile_grouped --m "$M" --variant "$variant" \
        > "/tmp/log_$name.txt" 2>&1 || tail -20 "/tmp/log_$name.txt"
    ncu -i "$OUT/$name.ncu-rep" --page raw --csv > "/tmp/raw_$name.csv"
    echo "### $name ($variant)"
    python3 -m benchmarks.harness.cases.gpt_oss_moe.ncu_summary "/tmp/raw_$name.csv"
}
run_ncu default default --set full --import-source yes
ncu -i "$OUT/default.ncu-rep" --page details > "$OUT/details_default.txt"
grep -E "^ +(OPT|WRN) " -A2 "$OUT/details_default.txt" | grep -iE "bank|stall|uncoalesced|occupancy|issue" \
    | cut -c1-200 | head -12
run_ncu cand "$VARIANT" --section SpeedOfLight --section WarpStateStats --section LaunchStats \
    --section Occupancy --section SchedulerStats --section MemoryWorkloadAnalysis_Tables
for f in $(find ~/.triton/cache -name '*.cubin' | grep -E '_gate_up_kernel|_down_kernel'); do
    cuobjdump -sass "$f" > "$OUT/sass_$(basename "$f" .cubin)_$(basename "$(dirname "$f")" | cut -c1-8).txt"
done
for m in 64 256 1024; do python3 -m benchmarks.harness.cases.gpt_oss_moe.profile_grouped --m $m --compare; done
