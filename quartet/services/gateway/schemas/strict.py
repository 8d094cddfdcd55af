"""What every request schema shares: strict parsing, our two error kinds, and the common checks.

The checks are plain functions so that Chat Completions, Completions and
Responses validate the same parameter the same way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from quartet.services.common.sampling import RANGES

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX = 2**32 - 1


class Strict(BaseModel):
    # strict: "0.5" is not a number and 1 is not a string, as in OpenAI's API.
    model_config = ConfigDict(extra="forbid", strict=True)


def unsupported(message: str) -> PydanticCustomError:
    """A known parameter (or value) we do not implement: reported with code unsupported_parameter."""
    return PydanticCustomError("unsupported_parameter", message)


def invalid(message: str) -> PydanticCustomError:
    """A value outside what the parameter allows, said in a full sentence."""
    return PydanticCustomError("invalid_value", message)


def absent(value: Any) -> bool:
    return value is None or value == [] or value == {}


def check_stream_options(value: Any, is_streaming: bool) -> Any:
    """``stream_options`` only makes sense on a streamed request (OpenAI rejects it otherwise too)."""
    if value is not None and not is_streaming:
        raise invalid("stream_options is only allowed when stream is true")
    return value


def check_stop(value: str | list[str] | None) -> str | list[str] | None:
    if value == "" or (isinstance(value, list) and "" in value):
        raise invalid("stop strings must not be empty")
    return value


def check_logit_bias(value: dict[str, float] | None) -> dict[str, float] | None:
    for key, bias in (value or {}).items():
        if not key.isdigit() or int(key) > UINT32_MAX:
            raise invalid(f"logit_bias keys must be token ids (decimal strings), got '{key}'")
        if bias not in RANGES["logit_bias"]:
            raise invalid(f"logit_bias values must lie in {RANGES['logit_bias']}, got {bias} for token {key}")
    return value


def check_token_ids(value: list[int] | None, what: str) -> list[int] | None:
    if value and any(not 0 <= token <= UINT32_MAX for token in value):
        raise invalid(f"{what} must be non-negative token ids")
    return value
