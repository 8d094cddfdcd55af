"""The operator's cap on generated tokens (``MAX_TOKENS_CAP``), applied the same way on every route."""

from __future__ import annotations

from quartet.services.gateway.errors import BadRequest


def resolve_max_tokens(requested: int | None, *, field: str, cap: int | None, default: int | None = None) -> int | None:
    """The limit to send to the engine: the client's, else ``default``, never past ``cap``.

    A client asking for more than the cap gets a 400 naming ``field`` rather
    than a silently shorter answer; one asking for nothing gets the cap.
    """
    if requested is not None and cap is not None and requested > cap:
        raise BadRequest(
            f"{field} is {requested}, more than this server allows ({cap}); ask for at most {cap}",
            field=field,
            code="invalid_value",
        )
    value = requested if requested is not None else default
    if cap is None:
        return value
    return cap if value is None else min(value, cap)
