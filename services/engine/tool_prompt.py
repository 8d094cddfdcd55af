"""Tools for chat templates that have no tool support (SmolLM2's ChatML template, for one).

The template cannot place tools, so the engine writes them into the system
message in this documented format and asks for a bare JSON reply, which
``output_parser.JsonToolCallParser`` recognises:

    # Tools

    You may call one of these tools. To call a tool, reply with only a JSON object
    {"name": <tool name>, "arguments": <arguments object>} and nothing else.
    Otherwise answer normally.

    [{"name": "get_weather", "description": "...", "parameters": {...}}, ...]

Earlier turns are rewritten to match: an assistant message's tool calls become
that JSON (one per line), and a tool result is a ``tool`` message whose content
starts with the tool's name. Templates that do support tools get them through
the template instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from services.engine.request import ChatMessage, Tool, ToolCall

TOOL_INSTRUCTIONS = (
    "# Tools\n\n"
    "You may call one of these tools. To call a tool, reply with only a JSON object "
    '{"name": <tool name>, "arguments": <arguments object>} and nothing else. '
    "Otherwise answer normally.\n\n"
)


def tools_text(tools: Sequence[Tool]) -> str:
    entries = []
    for tool in tools:
        entry: dict = {"name": tool.name}
        if tool.description:
            entry["description"] = tool.description
        entry["parameters"] = _json_or_object(tool.parameters_json)
        entries.append(entry)
    return TOOL_INSTRUCTIONS + json.dumps(entries, ensure_ascii=False)


def call_text(call: ToolCall) -> str:
    """One tool call as the model is asked to write it."""
    return json.dumps({"name": call.name, "arguments": _json_or_object(call.arguments)}, ensure_ascii=False)


def with_tools(messages: Sequence[ChatMessage], tools: Sequence[Tool]) -> list[ChatMessage]:
    """The conversation with earlier tool turns written out and the tools, if any, in its system message."""
    out: list[ChatMessage] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, to label results
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            for call in message.tool_calls:
                names[call.id] = call.name
            calls = "\n".join(call_text(c) for c in message.tool_calls)
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
        out[0] = ChatMessage(role=first.role, content=f"{first.content}\n\n{tools_text(tools)}", name=first.name)
    else:
        out.insert(0, ChatMessage(role="system", content=tools_text(tools)))
    return out


def _json_or_object(text: str):
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
