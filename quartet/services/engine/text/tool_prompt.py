"""Tools for chat templates that have no tool support (SmolLM2's ChatML template, for one).

The template cannot place tools, so the engine writes them into the system
message in this documented format and asks for a bare JSON reply, which
``json_tool_calls.JsonToolCallParser`` recognises:

    # Tools

    You may call one of these tools. To call a tool, reply with only a JSON object
    {"name": <tool name>, "arguments": <arguments object>} and nothing else.
    Otherwise answer normally.

    [{"name": "get_weather", "description": "...", "parameters": {...}}, ...]

When the request allows several calls per reply (``ChatInput.parallel_tool_calls``)
the instruction asks for a JSON array of such objects instead,
``[{"name": ..., "arguments": {...}}, {"name": ..., "arguments": {...}}]``: the form
SmolLM2 and the APIGen-style function-calling data small instruct models are
tuned on use, and one a JSON Schema (``type: array``, ``items.anyOf`` of call
envelopes) can force. A single object is still read as one call.

Earlier turns are rewritten to match: an assistant message's one tool call
becomes that JSON object, several become one JSON array, and a tool result is a
``tool`` message whose content starts with the tool's name. Templates that do
support tools get them through the template instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from quartet.services.engine.api.request import ChatMessage, Tool, ToolCall

TOOL_INSTRUCTIONS = (
    "# Tools\n\n"
    "You may call one of these tools. To call a tool, reply with only a JSON object "
    '{"name": <tool name>, "arguments": <arguments object>} and nothing else. '
    "Otherwise answer normally.\n\n"
)
PARALLEL_TOOL_INSTRUCTIONS = (
    "# Tools\n\n"
    "You may call one or more of these tools. To call tools, reply with only a JSON array of calls "
    '[{"name": <tool name>, "arguments": <arguments object>}, ...] and nothing else. '
    "Otherwise answer normally.\n\n"
)


def tools_text(tools: Sequence[Tool], *, parallel: bool = False) -> str:
    entries = []
    for tool in tools:
        entry: dict = {"name": tool.name}
        if tool.description:
            entry["description"] = tool.description
        entry["parameters"] = _json_or_object(tool.parameters_json)
        entries.append(entry)
    instructions = PARALLEL_TOOL_INSTRUCTIONS if parallel else TOOL_INSTRUCTIONS
    return instructions + json.dumps(entries, ensure_ascii=False)


def call_object(call: ToolCall) -> dict:
    return {"name": call.name, "arguments": _json_or_object(call.arguments)}


def call_text(call: ToolCall) -> str:
    """One tool call as the model is asked to write it."""
    return json.dumps(call_object(call), ensure_ascii=False)


def calls_text(calls: Sequence[ToolCall]) -> str:
    """An assistant turn's calls: one object, or an array of several."""
    if len(calls) == 1:
        return call_text(calls[0])
    return json.dumps([call_object(c) for c in calls], ensure_ascii=False)


def with_tools(messages: Sequence[ChatMessage], tools: Sequence[Tool], *, parallel: bool = False) -> list[ChatMessage]:
    """The conversation with earlier tool turns written out and the tools, if any, in its system message.

    ``parallel``: the instructions ask for an array of calls (see the module docstring).
    """
    out: list[ChatMessage] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, to label results
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            for call in message.tool_calls:
                names[call.id] = call.name
            calls = calls_text(message.tool_calls)
            content = f"{message.content}\n{calls}" if message.content else calls
            out.append(ChatMessage(role="assistant", content=content, name=message.name))
        elif message.role == "tool":
            name = message.name or names.get(message.tool_call_id, "")
            content = f"{name} returned: {message.content}" if name else message.content
            out.append(ChatMessage(role="tool", content=content))
        else:
            out.append(message)
    if not tools:
        return out
    if out and out[0].role in ("system", "developer"):
        first = out[0]
        content = f"{first.content}\n\n{tools_text(tools, parallel=parallel)}"
        out[0] = ChatMessage(role=first.role, content=content, name=first.name)
    else:
        out.insert(0, ChatMessage(role="system", content=tools_text(tools, parallel=parallel)))
    return out


def _json_or_object(text: str):
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
