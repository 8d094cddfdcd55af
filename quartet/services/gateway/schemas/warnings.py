"""Warnings about an answer that is valid but not what the model would have written unhindered.

OpenAI has no such field; clients that do not know it ignore it (the SDK's types keep extra
fields). It is left out of the JSON unless there is a warning, so answers look like OpenAI's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, model_serializer


class OutputWarning(BaseModel):
    #: ``constraint_closed``: the token limit ran out inside the requested format (JSON Schema, JSON
    #: object, regex, grammar or forced tool call) and the engine wrote the shortest valid ending.
    code: Literal["constraint_closed"]
    message: str


class MayWarn(BaseModel):
    """A part of an answer that can carry ``warnings``; the key is omitted when there are none."""

    warnings: list[OutputWarning] | None = None

    @model_serializer(mode="wrap")
    def _omit_no_warnings(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("warnings") is None:
            data.pop("warnings", None)
        return data


CONSTRAINT_CLOSED = OutputWarning(
    code="constraint_closed",
    message=(
        "the output would not have fit its token limit in the requested format, so the engine ended it with "
        "the shortest completion the format allows: it parses, but the model was cut short"
    ),
)
