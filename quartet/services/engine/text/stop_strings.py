"""Stop strings over streamed text: never emit a stop string, nor a prefix of one too early.

Text arrives in deltas. Any complete stop string in the unreleased text ends the
output just before it. Otherwise the longest tail of the unreleased text that
could still grow into a stop string is held back and the rest is released, so
a client never sees ``"<|"`` of a ``"<|end|>"`` that later completes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StopResult:
    """Text safe to emit now, and the stop string that ended the output, if one did."""

    text: str
    matched: str | None = None


class StopStringMatcher:
    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self._done = False

    @property
    def is_active(self) -> bool:
        return bool(self._stops)

    def push(self, delta: str) -> StopResult:
        if self._done:
            raise RuntimeError("push after a stop string matched")
        if not self._stops:
            return StopResult(delta)
        text = self._pending + delta
        match = self._earliest_match(text)
        if match is not None:
            start, stop = match
            self._pending = ""
            self._done = True
            return StopResult(text[:start], stop)
        held = self._held_tail(text)
        self._pending = text[len(text) - held :] if held else ""
        return StopResult(text[: len(text) - held])

    def flush(self) -> str:
        """Release the held tail: the output ended some other way, so it was never a stop."""
        text, self._pending = self._pending, ""
        return text

    def _earliest_match(self, text: str) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for stop in self._stops:
            index = text.find(stop)
            # Earliest start wins; at the same start the longer stop is the one that matched fully.
            if index >= 0 and (best is None or index < best[0] or (index == best[0] and len(stop) > len(best[1]))):
                best = (index, stop)
        return best

    def _held_tail(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
