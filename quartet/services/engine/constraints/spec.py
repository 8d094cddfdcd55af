"""What a request's constraint means as a grammar: plain data, no xgrammar, no torch.

A ``GrammarSpec`` is the one thing the compiler sees, and (with the tokenizer)
the key of the compiled-grammar cache, so it holds text only. The mapping from
the proto's ``Constraint`` oneof:

* ``json_object``: any JSON object, as the JSON Schema ``{"type": "object"}``.
* ``json_schema``: the schema as given.
* ``regex``: the regular expression (the whole output must match).
* ``grammar``: a GBNF grammar (llama.cpp's notation, which xgrammar's EBNF reads) with a ``root`` rule.
* ``choice``: a grammar whose root is the alternation of the choices as string literals.
* ``tool_name``: the call of that tool in the model's tool-call format (``ToolCallFormat``): for
  template models the JSON envelope ``{"name": <tool>, "arguments": <its parameters>}``;
  for Harmony only the arguments, because the renderer writes the call's header
  (``to=functions.<tool> <|constrain|>json<|message|>``) into the prompt.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.api.request import Constraint, Tool


class GrammarKind(enum.Enum):
    JSON_SCHEMA = "json_schema"
    REGEX = "regex"
    EBNF = "ebnf"


class ToolCallFormat(enum.Enum):
    """How a model writes a tool call, which decides what a forced tool call constrains."""

    JSON_ENVELOPE = "json_envelope"  # {"name": ..., "arguments": {...}} as the whole output
    ARGUMENTS_ONLY = "arguments_only"  # the prompt already names the tool (Harmony)


@dataclass(frozen=True, slots=True)
class GrammarSpec:
    kind: GrammarKind
    source: str
    #: The request field the grammar came from, for error messages; not part of the cache key.
    origin: str = field(default="constraint", compare=False)


ANY_OBJECT_SCHEMA = '{"type": "object"}'


def grammar_spec(constraint: Constraint, tools: Sequence[Tool], tool_format: ToolCallFormat) -> GrammarSpec:
    """The grammar for ``constraint``; InvalidArgument names the field when the value cannot be one."""
    kind, value = constraint.kind, constraint.value
    if kind == "json_object":
        return GrammarSpec(GrammarKind.JSON_SCHEMA, ANY_OBJECT_SCHEMA, "constraint.json_object")
    if kind == "json_schema":
        text = _schema_text(str(value), "constraint.json_schema")
        return GrammarSpec(GrammarKind.JSON_SCHEMA, text, "constraint.json_schema")
    if kind == "regex":
        if not value:
            raise InvalidArgument("constraint.regex: must not be empty", field="constraint.regex")
        return GrammarSpec(GrammarKind.REGEX, str(value), "constraint.regex")
    if kind == "grammar":
        if not str(value).strip():
            raise InvalidArgument("constraint.grammar: must not be empty", field="constraint.grammar")
        return GrammarSpec(GrammarKind.EBNF, str(value), "constraint.grammar")
    if kind == "choice":
        return GrammarSpec(GrammarKind.EBNF, choice_grammar(tuple(value or ())), "constraint.choice")  # type: ignore[arg-type]
    if kind == "tool_name":
        tool = find_tool(str(value), tools)
        return GrammarSpec(GrammarKind.JSON_SCHEMA, tool_call_schema(tool, tool_format), f"chat.tools[{tool.name}]")
    raise InvalidArgument(f"constraint: unknown kind {kind!r}", field="constraint")


def choice_grammar(choices: Sequence[str]) -> str:
    if not choices:
        raise InvalidArgument("constraint.choice: give at least one choice", field="constraint.choice")
    if any(c == "" for c in choices):
        raise InvalidArgument("constraint.choice: choices must not be empty strings", field="constraint.choice")
    # A JSON string literal is also a valid EBNF string literal (same escapes); keep non-ASCII as is.
    return "root ::= " + " | ".join(json.dumps(c, ensure_ascii=False) for c in dict.fromkeys(choices))


def find_tool(name: str, tools: Sequence[Tool]) -> Tool:
    for tool in tools:
        if tool.name == name:
            return tool
    offered = ", ".join(t.name for t in tools) or "none"
    raise InvalidArgument(
        f"constraint.tool_name: {name!r} is not one of the request's chat.tools ({offered}); "
        "offer the tool in chat.tools",
        field="constraint.tool_name",
    )


def tool_parameters(tool: Tool) -> dict:
    """The tool's parameter schema; a tool without one takes any JSON object."""
    if not tool.parameters_json:
        return {"type": "object"}
    schema = json.loads(_schema_text(tool.parameters_json, f"chat.tools[{tool.name}].parameters_json"))
    return schema if isinstance(schema, dict) else {"type": "object"}


def tool_call_schema(tool: Tool, tool_format: ToolCallFormat) -> str:
    parameters = tool_parameters(tool)
    if tool_format is ToolCallFormat.ARGUMENTS_ONLY:
        return json.dumps(parameters)
    envelope = {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
    return json.dumps(envelope)


def _schema_text(text: str, field: str) -> str:
    """The schema as JSON text, checked to be a JSON object or boolean before the compiler sees it."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{field}: not valid JSON ({error})", field=field) from error
    if not isinstance(schema, (dict, bool)):
        raise InvalidArgument(f"{field}: a JSON Schema is an object, got {type(schema).__name__}", field=field)
    return text
