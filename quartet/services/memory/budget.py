"""Token budgets: which remembered turns fit, dropping the oldest first, keeping the summary.

The plan's rule (DESIGN.md, "Router and memory"): system + summary + retrieved +
recent turns must fit ``n_ctx - max_tokens - margin``. The router subtracts the
system prompt, the new message and the margin (counted with the engine's
CountTokens) and sends the rest as ``token_budget``; here the summary is paid for
first and the turns fill what is left, newest first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from quartet.services.memory.turns import Summary, Turn

# A turn stored without a count still costs tokens; assume a pessimistic ~3 bytes per
# token (English BPE averages about 4) so an uncounted turn never sneaks past a budget.
_BYTES_PER_TOKEN_ESTIMATE = 3


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / _BYTES_PER_TOKEN_ESTIMATE)


def turn_tokens(turn: Turn) -> int:
    """The stored count, or a conservative estimate when the caller did not count."""
    if turn.num_tokens > 0:
        return turn.num_tokens
    return estimate_tokens(turn.content)


def summary_tokens(summary: Summary) -> int:
    return summary.num_tokens if summary.num_tokens > 0 else estimate_tokens(summary.content)


def fit_budget(turns: Sequence[Turn], token_budget: int) -> list[Turn]:
    """The newest turns whose tokens fit the budget, oldest first; 0 means no limit.

    Dropping stops at the first turn that does not fit: a context with a hole in
    the middle would misrepresent the conversation.
    """
    if token_budget <= 0:
        return list(turns)
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        used += turn_tokens(turn)
        if used > token_budget:
            break
        kept.append(turn)
    kept.reverse()
    return kept


def fit_with_summary(turns: Sequence[Turn], summary: Summary | None, token_budget: int) -> list[Turn]:
    """``fit_budget`` after the summary took its share; the summary itself is never dropped."""
    if token_budget <= 0 or summary is None:
        return fit_budget(turns, token_budget)
    left = token_budget - summary_tokens(summary)
    return fit_budget(turns, left) if left > 0 else []
