"""Request validation: every check names the offending field, so a client knows what to fix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from quartet.services.common.errors import InvalidArgument, require
from quartet.services.memory.turns import ROLES, Turn

# Ids end up in logs and SQL parameters; a conservative charset keeps both boring.
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]+$")
MAX_ID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Limits:
    default_k: int = 20
    max_k: int = 1000
    max_content_bytes: int = 256 * 1024
    max_turns_per_append: int = 256
    #: Largest stored response record (the gateway's JSON), in bytes.
    max_response_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 1 <= self.default_k <= self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must be between 1 and max_k ({self.max_k})")


def check_id(value: str, field: str, *, required: bool) -> None:
    """Validate a session or topic id; empty is allowed only when not required."""
    if not value:
        require(not required, f"{field} is required", field=field)
        return
    require(
        len(value) <= MAX_ID_LENGTH,
        f"{field} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}",
        field=field,
    )
    require(
        ID_PATTERN.match(value) is not None,
        f"{field} may contain only letters, digits and . _ : @ -",
        field=field,
    )


def check_turns(turns: Sequence[Turn], limits: Limits) -> None:
    require(len(turns) > 0, "turns must hold at least one turn", field="turns")
    require(
        len(turns) <= limits.max_turns_per_append,
        f"turns holds {len(turns)} turns; at most {limits.max_turns_per_append} fit in one request",
        field="turns",
    )
    for index, turn in enumerate(turns):
        if turn.role not in ROLES:
            raise InvalidArgument(
                f"turns[{index}].role is {turn.role!r}; use one of {', '.join(sorted(ROLES))}",
                field=f"turns[{index}].role",
            )
        size = len(turn.content.encode("utf-8"))
        require(
            size <= limits.max_content_bytes,
            f"turns[{index}].content is {size} bytes; the limit is {limits.max_content_bytes}",
            field=f"turns[{index}].content",
        )


def resolve_k(k: int, limits: Limits) -> int:
    """0 means the service default; above max_k is an error rather than a silent clamp."""
    if k == 0:
        return limits.default_k
    require(k <= limits.max_k, f"k is {k}; the limit is {limits.max_k}", field="k")
    return k
