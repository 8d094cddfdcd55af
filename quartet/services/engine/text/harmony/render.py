"""Render a chat conversation in the Harmony format (gpt-oss) with openai-harmony.

The mapping from OpenAI-style messages (as vLLM's gpt-oss chat path does it):

* The Harmony ``system`` message is the model's own (identity, reasoning
  effort, valid channels); the caller's ``system`` and ``developer`` messages
  become the Harmony ``developer`` message's instructions, in order, and the
  request's tools its ``functions`` namespace.
* ``user`` is ``user``. ``assistant`` is a ``final``-channel message, preceded by
  an ``analysis`` message when it carries reasoning, and followed by one
  ``commentary`` message per tool call, addressed ``to=functions.<name>`` with
  ``<|constrain|>json`` content. ``tool`` is a message from
  ``functions.<name>`` to the assistant on ``commentary``; the name comes from
  the message's ``name`` or from the call its ``tool_call_id`` answers.
* A JSON response format is appended to the developer message as Harmony's
  ``# Response Formats`` section (openai-harmony has no builder for it, so the
  developer message's text is extended and re-encoded in place).
* A ``prefill`` (``Prefill``) continues the ``<|start|>assistant`` the renderer
  ends with, so a constrained request starts inside the final channel or inside
  the forced tool call, and the grammar covers only the message body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.api.request import ChatInput, ChatMessage, Tool

START, END, MESSAGE = "<|start|>", "<|end|>", "<|message|>"
REASONING_EFFORTS = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Prefill:
    """Header text that opens the assistant's message in the prompt (after ``<|start|>assistant``)."""

    text: str

    @staticmethod
    def final() -> Prefill:
        return Prefill("<|channel|>final<|message|>")

    @staticmethod
    def tool_call(name: str) -> Prefill:
        # The same header openai-harmony renders for a past call.
        return Prefill(f" to=functions.{name}<|channel|>commentary <|constrain|>json<|message|>")


def conversation(chat: ChatInput, *, reasoning_effort: str = "medium"):
    """The openai-harmony Conversation for ``chat``."""
    from openai_harmony import Conversation, DeveloperContent, Message, ReasoningEffort, Role, SystemContent

    system = SystemContent.new().with_reasoning_effort(ReasoningEffort(reasoning_effort.capitalize()))
    messages = [Message.from_role_and_content(Role.SYSTEM, system)]
    instructions = [m.content for m in chat.messages if m.role in ("system", "developer") and m.content]
    if instructions or chat.tools:
        developer = DeveloperContent.new()
        if instructions:
            developer = developer.with_instructions("\n\n".join(instructions))
        if chat.tools:
            developer = developer.with_function_tools([_tool_description(t) for t in chat.tools])
        messages.append(Message.from_role_and_content(Role.DEVELOPER, developer))
    call_names: dict[str, str] = {}
    for i, message in enumerate(chat.messages):
        if message.role in ("system", "developer"):
            continue
        messages.extend(_messages(message, i, call_names))
    return Conversation.from_messages(messages)


def _messages(message: ChatMessage, i: int, call_names: dict[str, str]) -> list:
    from openai_harmony import Author, Message, Role

    if message.role == "user":
        return [Message.from_role_and_content(Role.USER, message.content)]
    if message.role == "assistant":
        out = []
        if message.reasoning:
            out.append(Message.from_role_and_content(Role.ASSISTANT, message.reasoning).with_channel("analysis"))
        if message.content:
            out.append(Message.from_role_and_content(Role.ASSISTANT, message.content).with_channel("final"))
        for call in message.tool_calls:
            call_names[call.id] = call.name
            out.append(
                Message.from_role_and_content(Role.ASSISTANT, call.arguments or "{}")
                .with_channel("commentary")
                .with_recipient(f"functions.{call.name}")
                .with_content_type("<|constrain|>json")
            )
        return out
    # role == "tool"
    name = message.name or call_names.get(message.tool_call_id, "")
    if not name:
        raise InvalidArgument(
            f"chat.messages[{i}]: a tool message needs a name or the tool_call_id of an earlier assistant tool call",
            field="chat.messages",
        )
    author = Author.new(Role.TOOL, f"functions.{name}")
    return [
        Message.from_author_and_content(author, message.content).with_channel("commentary").with_recipient("assistant")
    ]


def _tool_description(tool: Tool):
    from openai_harmony import ToolDescription

    parameters = None
    if tool.parameters_json:
        try:
            parameters = json.loads(tool.parameters_json)
        except json.JSONDecodeError as error:
            raise InvalidArgument(
                f"chat.tools[{tool.name}].parameters_json: not valid JSON ({error})", field="chat.tools"
            ) from error
    return ToolDescription.new(tool.name, tool.description, parameters=parameters)


def response_format_section(schema_json: str, name: str = "response") -> str:
    """Harmony's structured-output section for the end of the developer message."""
    schema = json.dumps(json.loads(schema_json), separators=(",", ":"))
    return f"\n\n# Response Formats\n\n## {name}\n\n// The reply is JSON that fits this schema.\n{schema}"


def render_prompt(
    encoding,
    chat: ChatInput,
    *,
    response_format: str | None = None,
    prefill: Prefill | None = None,
    reasoning_effort: str = "medium",
) -> list[int]:
    """Token ids of ``chat`` ready for the assistant's reply (and the prefill, if any)."""
    from openai_harmony import Role

    ids = encoding.render_conversation_for_completion(
        conversation(chat, reasoning_effort=reasoning_effort), Role.ASSISTANT
    )
    if response_format is not None:
        ids = _append_to_developer(encoding, ids, response_format_section(response_format))
    if prefill is not None:
        ids = ids + encoding.encode(prefill.text, allowed_special="all")
    return ids


def _append_to_developer(encoding, ids: list[int], text: str) -> list[int]:
    """Add ``text`` at the end of the developer message (adding one if there is none), re-encoding its body."""
    start, end, message = (encoding.encode(t, allowed_special="all")[0] for t in (START, END, MESSAGE))
    developer = encoding.encode("developer")
    for i in range(len(ids) - len(developer)):
        if (
            ids[i] == start
            and ids[i + 1 : i + 1 + len(developer)] == developer
            and ids[i + 1 + len(developer)] == message
        ):
            body_start = i + 2 + len(developer)
            body_end = ids.index(end, body_start)
            body = encoding.decode(ids[body_start:body_end]) + text
            return ids[:body_start] + encoding.encode(body, disallowed_special=()) + ids[body_end:]
    # No developer message: insert one after the system message.
    system_end = ids.index(end) + 1
    added = encoding.encode(f"{START}developer{MESSAGE}{text.lstrip()}{END}", allowed_special="all")
    return ids[:system_end] + added + ids[system_end:]
