"""fit_budget alone: the newest turns that fit, oldest dropped first, no holes."""

from __future__ import annotations

from quartet.services.memory.core import fit_budget, turn_tokens
from quartet.services.memory.turns import Turn


def turns(*sizes: int) -> list[Turn]:
    return [Turn("user", f"t{i}", num_tokens=n) for i, n in enumerate(sizes)]


def test_zero_budget_means_unlimited():
    assert fit_budget(turns(5, 5), 0) == turns(5, 5)


def test_keeps_newest_suffix_without_holes():
    # t1 (50) does not fit after t2+t3 (30); t0 (1) would, but skipping t1 would leave a hole.
    kept = fit_budget(turns(1, 50, 10, 20), 40)
    assert [t.content for t in kept] == ["t2", "t3"]


def test_exact_fit_is_kept():
    assert [t.content for t in fit_budget(turns(10, 20), 30)] == ["t0", "t1"]


def test_uncounted_turns_are_estimated_not_free():
    uncounted = Turn("user", "x" * 300)
    assert turn_tokens(uncounted) == 100
    assert fit_budget([uncounted], 99) == []
    assert fit_budget([uncounted], 100) == [uncounted]
