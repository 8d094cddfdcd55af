"""The sampling fields, declared and checked once for every API that generates.

Chat Completions and Completions take all of them (``TextSampling``); Responses takes
the ``Sampling`` core (OpenAI's temperature and top_p, plus the vLLM-compatible extensions
sent through the SDK's ``extra_body``). ``convert.sampling_params`` and ``convert.stopping``
read these models and nothing else, so a range or a check changes in one place.
Pydantic puts inherited fields first: none of these validators reads another field, so
that order changes nothing about what a request means.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from quartet.services.common.sampling import RANGES
from quartet.services.gateway.schemas.strict import INT64_MAX, INT64_MIN, UINT32_MAX, Strict, check_logit_bias, check_stop, check_token_ids


class Sampling(Strict):
    temperature: float | None = Field(default=None, **RANGES["temperature"].bounds())
    top_p: float | None = Field(default=None, **RANGES["top_p"].bounds())
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    # vLLM-compatible extensions.
    top_k: int | None = Field(default=None, ge=0, le=UINT32_MAX)
    min_p: float | None = Field(default=None, **RANGES["min_p"].bounds())
    repetition_penalty: float | None = Field(default=None, **RANGES["repetition_penalty"].bounds())
    ignore_eos: bool | None = None


class TextSampling(Sampling):
    """``Sampling`` plus the stop and penalty fields of Chat Completions and Completions."""

    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, **RANGES["presence_penalty"].bounds())
    frequency_penalty: float | None = Field(default=None, **RANGES["frequency_penalty"].bounds())
    logit_bias: dict[str, float] | None = None
    # vLLM-compatible extension.
    stop_token_ids: list[int] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        return check_stop(value)

    @field_validator("logit_bias")
    @classmethod
    def _token_id_keys(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return check_logit_bias(value)

    @field_validator("stop_token_ids")
    @classmethod
    def _token_ids(cls, value: list[int] | None) -> list[int] | None:
        return check_token_ids(value, "stop_token_ids")

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)
