"""The token bucket alone, on a hand-driven clock: no server, no sleeping."""

from __future__ import annotations

import pytest

from quartet.services.gateway.errors import BadRequest
from quartet.services.gateway.limits import resolve_max_tokens
from quartet.services.gateway.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(6, burst=2, clock=clock)  # one token every 10 s
    assert [limiter.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.acquire("a") == pytest.approx(6.0), "the wait shrinks as the bucket refills"
    clock.now += 6
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(10.0)


def test_callers_have_their_own_buckets() -> None:
    limiter = RateLimiter(60, burst=1, clock=Clock())
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_a_quiet_caller_refills_only_up_to_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(60, burst=3, clock=clock)
    limiter.acquire("a")
    clock.now += 3600
    assert [limiter.acquire("a") == 0.0 for _ in range(4)] == [True, True, True, False]


def test_default_burst_is_a_minute_of_requests() -> None:
    limiter = RateLimiter(5, clock=Clock())
    assert [limiter.acquire("a") == 0.0 for _ in range(6)] == [True] * 5 + [False]


def test_no_limit_is_not_a_limiter() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


@pytest.mark.parametrize(
    ("requested", "cap", "default", "expected"),
    [(None, None, None, None), (None, None, 16, 16), (5, None, 16, 5), (None, 8, None, 8), (None, 8, 16, 8), (4, 8, 16, 4), (8, 8, None, 8)],
)
def test_max_tokens_cap(requested: int | None, cap: int | None, default: int | None, expected: int | None) -> None:
    assert resolve_max_tokens(requested, field="max_tokens", cap=cap, default=default) == expected


def test_max_tokens_past_the_cap_names_the_field() -> None:
    with pytest.raises(BadRequest) as info:
        resolve_max_tokens(9, field="max_completion_tokens", cap=8)
    assert info.value.field == "max_completion_tokens" and "8" in info.value.message
