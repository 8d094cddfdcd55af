"""The allowed range of every bounded sampling field, written once.

The gateway's request schemas (``gateway/schemas/sampling.py``) turn these into their field
bounds and the engine checks its gRPC requests against the same table
(``engine/validation.py``): the engine is called directly too (the router, grpcurl), so it
cannot skip the check, but the two can no longer disagree about a range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Range:
    low: float
    high: float
    #: The low end itself is not allowed (top_p 0 would keep no token).
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def bounds(self) -> dict[str, float]:
        """As pydantic ``Field`` bounds."""
        return {"gt" if self.low_open else "ge": self.low, "le": self.high}


#: Field name -> range (logit_bias: of each bias value).
RANGES: dict[str, Range] = {
    "temperature": Range(0.0, 2.0),
    "top_p": Range(0.0, 1.0, low_open=True),
    "min_p": Range(0.0, 1.0),
    "presence_penalty": Range(-2.0, 2.0),
    "frequency_penalty": Range(-2.0, 2.0),
    "repetition_penalty": Range(0.0, 2.0, low_open=True),
    "logit_bias": Range(-100.0, 100.0),
}
#: Most alternatives one position may report (OpenAI's limit).
MAX_TOP_LOGPROBS = 20
