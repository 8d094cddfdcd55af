"""Function tools and ``tool_choice`` as Chat Completions and Responses spell them.

The two APIs nest differently (Chat: ``{"type": "function", "function": {...}}``,
Responses: the function's fields beside ``type``), but mean the same thing, so
both become one ``FunctionSpec`` (below). Only function tools exist here: a
custom, web-search or MCP tool is refused by its type, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from quartet.services.gateway.schemas.strict import Strict, invalid, unsupported

#: OpenAI's rule for function names; the engine needs them plain to write and parse calls.
FUNCTION_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


def _check_parameters(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # A JSON Schema for the arguments is an object schema; the engine compiles it when a call is forced.
    if value is not None and value and value.get("type", "object") != "object":
        raise invalid("a function's 'parameters' must be a JSON Schema of type 'object'")
    return value


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function a request offers, as every request kind hands it on (chat and responses tools)."""

    name: str
    description: str = ""
    #: The arguments' JSON Schema; None means any object.
    parameters: dict[str, Any] | None = None


class FunctionDefinition(Strict):
    """Chat Completions' ``tools[].function``."""

    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    #: Accepted: a forced call always fits the schema here (the engine's grammar), strict or not.
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_parameters(value)


class ChatTool(Strict):
    type: str
    function: FunctionDefinition | None = Field(default=None, validate_default=True)
    custom: Any = None

    @field_validator("type")
    @classmethod
    def _functions_only(cls, value: str) -> str:
        if value != "function":
            raise unsupported(f"tools of type '{value}' are not supported; send tools of type 'function'")
        return value

    @field_validator("function")
    @classmethod
    def _has_function(cls, value: FunctionDefinition | None, info: ValidationInfo) -> FunctionDefinition | None:
        if value is None and info.data.get("type") == "function":
            raise invalid("a tool of type 'function' needs its 'function' (name, parameters)")
        return value


class NamedFunction(Strict):
    name: str


class ChatNamedToolChoice(Strict):
    """``{"type": "function", "function": {"name": ...}}``: call exactly this tool."""

    type: Literal["function"]
    function: NamedFunction


ChatToolChoice = Literal["none", "auto", "required"] | ChatNamedToolChoice


class ResponsesFunctionTool(Strict):
    """Responses' ``tools[]`` entry of type function (the function's fields at the top)."""

    type: str
    name: str | None = Field(default=None, pattern=FUNCTION_NAME_PATTERN, validate_default=True)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("type")
    @classmethod
    def _functions_only(cls, value: str) -> str:
        if value != "function":
            raise unsupported(f"tools of type '{value}' are not supported; send tools of type 'function'")
        return value

    @field_validator("name")
    @classmethod
    def _has_name(cls, value: str | None) -> str | None:
        if value is None:
            raise invalid("a function tool needs its 'name'")
        return value

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_parameters(value)


class ResponsesNamedToolChoice(Strict):
    """``{"type": "function", "name": ...}``: call exactly this tool."""

    type: str
    name: str | None = Field(default=None, validate_default=True)

    @field_validator("type")
    @classmethod
    def _functions_only(cls, value: str) -> str:
        if value != "function":
            raise unsupported(f"tool_choice of type '{value}' is not supported; name a function or use none/auto/required")
        return value

    @field_validator("name")
    @classmethod
    def _has_name(cls, value: str | None) -> str | None:
        if value is None:
            raise invalid("a tool_choice of type 'function' needs the function's 'name'")
        return value


ResponsesToolChoice = Literal["none", "auto", "required"] | ResponsesNamedToolChoice
