"""The Socket.IO ``run`` event's payload, checked like an HTTP body (strict types, bounds)."""

from __future__ import annotations

from pydantic import Field

from quartet.services.gateway.schemas.strict import UINT32_MAX, Strict

#: Ids and the memory mode are names, not text: a bound keeps a hostile client from storing megabytes in them.
_ID_MAX = 256


class RunEvent(Strict):
    #: A topic agent's name; ``agent/`` in front is accepted (as in the HTTP model name).
    agent: str = Field(min_length=1, max_length=_ID_MAX)
    #: The user's message for this turn.
    input: str = ""
    session_id: str | None = Field(default=None, max_length=_ID_MAX)
    topic_id: str | None = Field(default=None, max_length=_ID_MAX)
    memory_mode: str | None = Field(default=None, max_length=_ID_MAX)
    #: Strict: ``true`` and ``1.5`` are refused, and a count past uint32 (the proto's field) too.
    max_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
