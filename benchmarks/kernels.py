"""One command for the GPU numbers: ceilings, torch bf16 and every MXFP4 kernel, in one run.

    python -m benchmarks.kernels [--cases a,b] [--m 1,16] [--out DIR] [--sweep] [--no-profile]

Prints the device, the measured copy-bandwidth and matmul ceilings, one table row per
(case, m, variant) and the targets with pass/miss; writes ``metrics.json``, ``table.txt``,
and ``archives.tar.gz`` (the per-case archive bundles, with gzipped profiler traces) to DIR
(default ``$OUT`` if set, else ``$QUARTET_HOME/kernels/runs/<timestamp>``). ``--sweep`` also times
a grid of launch configurations for the decode and prefill kernels (how ``_launch.py`` was tuned).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

from benchmarks.harness import (
    Experiment, archive, check_targets, format_table, format_targets, list_cases, load_case, measure_ceilings,
    profile_trace, write_metrics,
)
from benchmarks.harness.execute import VariantResult
from benchmarks.harness.report import ARCHIVE_DIR
from benchmarks.harness.timing import time_calls

DEFAULT_CASES = [c for c in list_cases() if not c.startswith("tiny_")]
PROFILE = {("dense_28672x8192", 1), ("gpt_oss_moe", 1), ("gpt_oss_down", 1), ("dense_28672x8192", 2048)}


def device_info() -> dict:
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "python": platform.python_version()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
        props = torch.cuda.get_device_properties(0)
        info["sms"] = props.multi_processor_count
        info["l2_bytes"] = getattr(props, "L2_cache_size", None)
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"unavailable: {exc}"
    return info


def sweep(device: torch.device) -> str:
    """Time launch configs of the decode and prefill kernels on the dense and down shapes."""
    from quartet.kernels.mxfp4._fma import FmaConfig
    from quartet.kernels.mxfp4._launch import MatmulConfig
    from quartet.kernels.mxfp4.gemm import mxfp4_gemm
    from quartet.kernels.mxfp4.gemv import mxfp4_gemv
    from quartet.kernels.mxfp4.ops import dequantize
    from quartet.kernels.mxfp4.format import quantize_torch
    from quartet.kernels.mxfp4.layout import to_layout

    lines = [f"{'shape':<16} {'m':>5} {'variant':<12} {'config':<28} {'warps':>5} {'stages':>6} {'us':>9} {'GB/s':>7}",
             "(one weight, not rotated: the 2880x2880 rows run from L2; rank configs with them, quote the tables)"]
    # fma: (bn, kw, chunks, warps, stages); tensor cores: (bn, bk, split_k, warps, stages).
    big = {"fma": [(64, 64, 8, 4, 1), (64, 64, 4, 4, 1), (64, 64, 2, 4, 1), (32, 64, 4, 4, 1), (128, 32, 4, 4, 1),
                   (64, 32, 4, 4, 1), (64, 64, 4, 4, 2), (64, 64, 8, 8, 1), (128, 64, 2, 8, 1), (64, 64, 16, 4, 1)],
           "dequant_dot": [(64, 256, 1, 4, 4)]}
    small = {"fma": [(64, 64, 1, 4, 1), (32, 64, 1, 4, 1), (32, 32, 2, 2, 1), (64, 32, 1, 4, 1), (16, 64, 1, 2, 1),
                     (32, 32, 1, 2, 1), (64, 64, 1, 4, 2), (32, 64, 2, 4, 1)],
             "dot_scaled": [(32, 128, 4, 4, 4)]}
    grid_prefill = {"dequant_dot": [(256, 128, 128, 8, 3), (128, 256, 64, 8, 3), (256, 128, 64, 8, 4)],
                    "dot_scaled": [(128, 256, 64, 8, 3)]}
    for (n, k), ms, grid_decode in (((28672, 8192), (1, 4, 2048), big), ((2880, 2880), (1,), small)):
        gen = torch.Generator(device=device)
        gen.manual_seed(0)
        w = quantize_torch(torch.randn((n, k), generator=gen, device=device) * 0.02)
        weights = {"ocp": w, "fma8": to_layout(w, "fma8")}
        ref_w = dequantize(w)
        for m in ms:
            x = torch.randn((m, k), generator=gen, device=device).bfloat16()
            ref = torch.nn.functional.linear(x, ref_w).float()
            configs = []
            if m <= 16:
                for mode, grid in grid_decode.items():
                    if m > 1 and mode != "fma":
                        continue
                    for a, b, c, wps, st in grid if m == 1 else grid[:3]:
                        configs.append((mode, FmaConfig(bn=a, kw=b, chunks=c, num_warps=wps, num_stages=st)
                                        if mode == "fma" else
                                        MatmulConfig(bm=16, bn=a, bk=b, split_k=c, num_warps=wps, num_stages=st,
                                                     mode=mode)))
            else:
                for mode, grid in grid_prefill.items():
                    for bm, bn, bk, wps, st in grid:
                        configs.append((mode, MatmulConfig(bm=bm, bn=bn, bk=bk, num_warps=wps, num_stages=st,
                                                           mode=mode)))
            op = mxfp4_gemv if m <= 16 else mxfp4_gemm
            nbytes = n * k // 2 + n * k // 32 + m * k * 2 + m * n * 2
            for mode, cfg in configs:
                wl = weights["ocp" if mode == "dot_scaled" else "fma8"]
                try:
                    y = op(x, wl, variant=mode, config=cfg).float()
                    err = ((y - ref).norm() / ref.norm()).item()
                    t = time_calls([lambda cfg=cfg, mode=mode, wl=wl: op(x, wl, variant=mode, config=cfg)], samples=10)
                    us = f"{t.median_us:9.2f}" + ("" if err < 1e-2 else f" BAD {err:.1e}")
                    gbps = f"{nbytes / t.median_us / 1e3:7.0f}"
                except Exception as exc:  # a config the compiler rejects is a data point, not a crash
                    us, gbps = f"error: {type(exc).__name__}: {str(exc)[:80]}", ""
                lines.append(f"{n}x{k:<10} {m:>5} {mode:<12} {_cfg_text(cfg)} {cfg.num_warps:>5} {cfg.num_stages:>6} "
                             f"{us} {gbps}")
        del w, ref_w, weights
        torch.cuda.empty_cache()
    return "\n".join(lines)


def _cfg_text(cfg: object) -> str:
    if hasattr(cfg, "kw"):
        return f"bn={cfg.bn} kw={cfg.kw} chunks={cfg.chunks}".ljust(28)
    return f"bm={cfg.bm} bn={cfg.bn} bk={cfg.bk} split={cfg.split_k}".ljust(28)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES))
    parser.add_argument("--m", default="", help="comma-separated m values (default: each manifest's)")
    parser.add_argument("--out", default=os.environ.get("OUT", ""))
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        parser.error("the benchmark needs a CUDA device (tests cover the CPU)")
    device = torch.device("cuda")
    home = Path(os.environ.get("QUARTET_HOME", Path(__file__).resolve().parents[2] / "var"))
    out = Path(args.out or home / "kernels" / "runs" / time.strftime("%Y%m%dT%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    meta = device_info()
    meta["command"] = "python -m benchmarks.kernels " + " ".join(argv if argv is not None else sys.argv[1:])
    print("\n".join(f"{k}: {v}" for k, v in meta.items()), flush=True)
    ceilings = measure_ceilings(device)
    meta["ceilings"] = ceilings.as_dict()
    print(f"ceilings: copy {ceilings.copy_gbps:.0f} GB/s (read+write of 1 GiB), "
          f"bf16 matmul {ceilings.matmul_tflops:.0f} TFLOP/s (8192^3)", flush=True)

    if args.sweep:
        text = sweep(device)
        (out / "sweep.txt").write_text(text + "\n")
        print(text, flush=True)

    results: list[VariantResult] = []
    checks = []
    table = targets = ""
    archives = []
    ms_override = [int(v) for v in args.m.split(",") if v]
    for name in [c for c in args.cases.split(",") if c]:
        case = load_case(name)
        case_results: list[VariantResult] = []
        traces: list[Path] = []
        for m in ms_override or case.manifest.m:
            exp = Experiment(case, m, device, ceilings, samples=args.samples)
            try:
                case_results += exp.run_all()
            except torch.cuda.OutOfMemoryError as exc:
                print(f"{name} m={m}: out of memory ({exc}); skipped", flush=True)
            if not args.no_profile and (name, m) in PROFILE and exp.results:
                best = min((r for r in exp.results if not r.is_baseline), key=lambda r: r.median_us, default=None)
                if best is not None:
                    fwd = case.model.variants(m)[best.variant]
                    (out / "traces").mkdir(exist_ok=True)
                    traces.append(profile_trace(fwd, exp.inputs, out / "traces" / f"trace_{name}_m{m}.json.gz"))
            print(format_table(exp.results).split("\n", 2)[-1], flush=True)
            if hasattr(case.model, "floor_us"):  # cases that state a floor: max(bytes / copy bw, flops / matmul peak)
                print(f"{name} m={m}: floor {case.model.floor_us(m, ceilings):.1f} us", flush=True)
            for variant, error in exp.errors.items():
                print(f"{name} m={m} {variant}: FAILED {error[:2000]}", flush=True)
                meta.setdefault("errors", []).append({"case": name, "m": m, "variant": variant, "error": error})
            del exp
            gc.collect()
            torch.cuda.empty_cache()
        results += case_results
        checks += check_targets(case, case_results)
        archives.append(archive(case, case_results, traces))
        # Written after every case, so a run cut short still leaves what it measured.
        table, targets = format_table(results), format_targets(checks)
        write_metrics(out / "metrics.json", meta, results, checks)
        (out / "table.txt").write_text(table + "\n\n" + targets + "\n")

    with tarfile.open(out / "archives.tar.gz", "w:gz") as tar:
        for folder in archives:
            tar.add(folder, arcname=folder.relative_to(ARCHIVE_DIR))
    shutil.rmtree(out / "traces", ignore_errors=True)  # they live in the archives
    print("\n" + table + "\n\n" + targets, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
