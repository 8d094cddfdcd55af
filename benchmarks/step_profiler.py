"""A cProfile of the engine worker's steps, for benchmarks (``engine_gpu --profile-steps``).

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

        from quartet.services.engine import engine_loop

        self.loop_class, self.profile = engine_loop.EngineLoop, cProfile.Profile()
        # A step's host work: launching it, and reading the one before it (asynchronous scheduling).
        self.originals = {name: getattr(self.loop_class, name) for name in ("_launch", "_read")}

    def start(self) -> None:
        profile = self.profile

        def profiled(original):  # noqa: ANN001, ANN202 - a wrapper with the wrapped method's signature
            def method(loop, *args):  # noqa: ANN001, ANN202
                profile.enable()
                try:
                    return original(loop, *args)
                finally:
                    profile.disable()

            return method

        for name, original in self.originals.items():
            setattr(self.loop_class, name, profiled(original))

    def stop(self) -> None:
        import pstats

        for name, original in self.originals.items():
            setattr(self.loop_class, name, original)
        pstats.Stats(self.profile).sort_stats("tottime").print_stats(20)
