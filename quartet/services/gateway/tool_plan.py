"""What ``tools`` and ``tool_choice`` ask of the engine: which tools it sees, and which constraint forces a call.

* ``auto``: the tools are offered; the model chooses, the engine's parser recognises a call.
* ``none``: the tools are not offered at all, so no call can be parsed (earlier tool turns
  in the conversation are still rendered: the engine writes them out without the tool list).
* named: ``constraint.tool_name``, which the engine compiles to the call of that tool in the
  model's own tool-call format (the JSON envelope, or Harmony's arguments after the header).
* ``required``: with one tool, the same as naming it (one call). With several, a
  ``json_schema`` constraint built from each tool's call envelope ``{"name": <const>,
  "arguments": <its parameters>}`` (exactly the output ``constraint.tool_name`` forces for one
  tool, so the engine's JSON tool-call parser reads it as a call): with ``parallel_tool_calls``
  an array of them, ``{"type": "array", "items": {"anyOf": [...]}, "minItems": 1}`` (one or
  more calls, the form the engine's tool prompt asks for), without it their ``anyOf`` (one
  call). Harmony (gpt-oss) writes the tool's name in a header the engine prefills, so there
  this form cannot work; the engine has no "any of these tools" constraint, and such a
  request is refused by name rather than answered with a call that is not one.

``parallel_tool_calls`` (OpenAI's default: true) goes to the engine as
``ChatInput.parallel_tool_calls``, so its parser streams several calls of one reply with
indices 0, 1, ... gpt-oss ends its turn after each call (Harmony's ``<|call|>``), so its
replies hold one call whatever the flag says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quartet.services.common.errors import QuartetError
from quartet.services.gateway.errors import BadRequest, UnsupportedParameter, constraint_refusal
from quartet.services.gateway.schemas.tools import FunctionSpec

if TYPE_CHECKING:
    from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest

#: Engine architectures whose tool calls are not a bare JSON envelope.
HEADER_TOOL_FORMATS = frozenset({"gpt_oss"})


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """The tools to offer and the constraint (if any) that forces a call."""

    tools: tuple[FunctionSpec, ...] = ()
    #: ``constraint.tool_name``.
    forced_tool: str | None = None
    #: ``constraint.json_schema`` forcing a call (or, with ``parallel``, calls) of several tools.
    any_call_schema: dict[str, Any] | None = None
    #: Whether one reply may hold several calls (``ChatInput.parallel_tool_calls``).
    parallel: bool = False

    @property
    def forces_call(self) -> bool:
        return self.forced_tool is not None or self.any_call_schema is not None


def call_envelope(tool: FunctionSpec) -> dict[str, Any]:
    """The JSON Schema of one call as a template model writes it (quartet/services/engine/text/tool_prompt.py)."""
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters or {"type": "object"}},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def calls_schema(tools: Sequence[FunctionSpec]) -> dict[str, Any]:
    """One or more calls, each of any of ``tools``, as the engine's tool prompt asks for several."""
    return {"type": "array", "items": {"anyOf": [call_envelope(tool) for tool in tools]}, "minItems": 1}


def plan_tools(
    tools: Sequence[FunctionSpec], choice: str | None, *, architecture: str = "", parallel: bool = True
) -> ToolPlan:
    """The plan for ``tools`` and ``choice`` ("auto", "none", "required", a tool name, or None for the default).

    ``parallel`` is the request's ``parallel_tool_calls`` (OpenAI's default, true, when unset).

    BadRequest (param ``tool_choice``/``tools``) for a choice the tools cannot satisfy.
    """
    names = [tool.name for tool in tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BadRequest(f"tools: the function name '{duplicates[0]}' is offered twice; names must be unique", field="tools")
    if choice is None:
        choice = "auto" if tools else "none"
    if choice == "none":
        return ToolPlan()
    if not tools:
        raise BadRequest(
            f"tool_choice '{choice}' needs tools; offer the functions in 'tools' or drop tool_choice", field="tool_choice"
        )
    offered = tuple(tools)
    if choice == "auto":
        return ToolPlan(tools=offered, parallel=parallel)
    if choice == "required":
        if len(offered) == 1:
            return ToolPlan(tools=offered, forced_tool=offered[0].name)
        if architecture in HEADER_TOOL_FORMATS:
            raise UnsupportedParameter(
                f"tool_choice 'required' with several tools is not supported for {architecture} models "
                "(the engine can force one named tool); name the tool, or offer only one",
                field="tool_choice",
            )
        if parallel:
            return ToolPlan(tools=offered, any_call_schema=calls_schema(offered), parallel=True)
        schema = {"anyOf": [call_envelope(tool) for tool in offered]}
        return ToolPlan(tools=offered, any_call_schema=schema)
    if choice not in names:
        raise BadRequest(
            f"tool_choice names the function '{choice}', which is not in tools ({', '.join(names)})", field="tool_choice"
        )
    return ToolPlan(tools=offered, forced_tool=choice)


def refuse_agent_tools(request: ChatCompletionRequest) -> None:
    """Agents (``agent/<name>``) run the router's own prompt and grammar: client tools cannot reach them."""
    if request.tools:
        raise UnsupportedParameter("tools are not supported for agent models; call an engine model with tools", field="tools")
    if request.tool_choice not in (None, "none", "auto"):
        raise UnsupportedParameter("tool_choice needs tools, which agent models do not take", field="tool_choice")


def tools_refusal(
    error: BaseException, plan: ToolPlan, *, parameters_path: str, format_param: str, limit_param: str = "max_tokens"
) -> BaseException:
    """The engine's refusal of a constraint, named as the client's parameter.

    A tool schema the grammar compiler rejects comes back as ``tools[<name>]`` and becomes
    ``parameters_path`` of that tool's index (e.g. ``tools[{index}].function.parameters``); a
    refused ``required`` schema names ``tools``; anything else is the output format's (``format_param``).
    The engine's ``max_tokens`` (too few for the format, or for the context) is the API's ``limit_param``.
    """
    if not isinstance(error, QuartetError):
        return error
    field_name = error.field or ""
    if field_name == "max_tokens":
        if limit_param == "max_tokens":
            return error
        return BadRequest(f"{limit_param}{error.message.removeprefix('max_tokens')}", field=limit_param)
    for index, tool in enumerate(plan.tools):
        if field_name == f"tools[{tool.name}]":
            path = parameters_path.format(index=index)
            return BadRequest(f"{path}: {error.message}", field=path)
    if plan.any_call_schema is not None:
        return constraint_refusal(error, "tools")
    return constraint_refusal(error, format_param)
