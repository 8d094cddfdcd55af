"""Benchmarks and sweeps: run from the checkout (``python -m benchmarks.<name>``), never installed.

They measure the installed ``quartet`` packages and print tables; docs/PERFORMANCE.md and docs/perf-log/ name the
command behind every figure. Nothing under ``quartet`` imports from here.
"""
