"""A cProfile of the engine worker's steps, for benchmarks (``bench_gpu --profile-steps``).

It shows where the worker's CPU time goes between two GPU steps. cProfile inflates short calls
(an H100 probe timed ``graph.replay()`` at 7 us where the profile said 0.3 ms), so read its
shares, not its microseconds; and it slows the row it profiles, so do not record that row's figure.
"""

from __future__ import annotations


class StepProfiler:
    """cProfile of the engine worker's steps during the batch-1 decode row (``--profile-steps``): where the
    CPU time between two GPU steps goes. Printed, not recorded."""

    def __init__(self) -> None:
        import cProfile

        from services.engine import engine_loop

        self.module, self.profile = engine_loop, cProfile.Profile()
        self.original = engine_loop.EngineLoop._step

    def start(self) -> None:
        profile, original = self.profile, self.original

        def step(loop, output):  # noqa: ANN001, ANN202 - a wrapper with the wrapped method's signature
            profile.enable()
            try:
                return original(loop, output)
            finally:
                profile.disable()

        self.module.EngineLoop._step = step

    def stop(self) -> None:
        import pstats

        self.module.EngineLoop._step = self.original
        pstats.Stats(self.profile).sort_stats("tottime").print_stats(20)
