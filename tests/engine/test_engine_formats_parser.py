"""Typed deltas for chat-template models: the JSON tool-call parser, typed chunks, the tool prompt."""

from __future__ import annotations

import json

import pytest

from quartet.services.engine.api.events import DeltaKind, FinishReason, Usage
from quartet.services.engine.text.json_tool_calls import JsonToolCallParser, match_call_header
from quartet.services.engine.text.output_parser import ContentParser, Delta, typed_chunks
from quartet.services.engine.api.request import ChatInput, ChatMessage, Tool, ToolCall
from quartet.services.engine.text.tool_prompt import TOOL_INSTRUCTIONS, with_tools

CALL = '{"name": "get_weather", "arguments": {"city": "Pa}ris \\"north\\"", "days": [1, 2]}}'


def feed(parser: JsonToolCallParser, text: str, step: int) -> list[Delta]:
    deltas: list[Delta] = []
    for i in range(0, len(text), step):
        deltas += parser.push(0, text[i : i + step])
    return deltas + parser.finish()


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_a_call_streams_its_name_then_its_arguments_whatever_the_chunking(step: int) -> None:
    parser = JsonToolCallParser(["get_weather"])
    deltas = feed(parser, "  " + CALL + "\n", step)
    calls = [d.tool_call for d in deltas]
    assert all(d.kind is DeltaKind.TOOL_CALL for d in deltas)
    assert calls[0].name == "get_weather" and calls[0].id.startswith("call_") and calls[0].arguments == ""
    arguments = "".join(c.arguments for c in calls)
    assert json.loads(arguments) == {"city": 'Pa}ris "north"', "days": [1, 2]}
    assert parser.num_tool_calls == 1
    if step == 1:
        assert len(calls) > 10  # streamed as it arrived


def test_parameters_key_and_tool_call_tags_are_read_too() -> None:
    parser = JsonToolCallParser(["f"])
    deltas = feed(parser, '<tool_call>\n{"name": "f", "parameters": {"x": 1}}\n</tool_call>', 3)
    assert "".join(d.tool_call.arguments for d in deltas) == '{"x": 1}'


@pytest.mark.parametrize(
    "text",
    [
        "Paris is sunny.",
        '{"name": "unknown_tool", "arguments": {}}',
        '{"answer": 42}',
        "   ",
    ],
)
def test_anything_else_is_content_and_nothing_is_lost(text: str) -> None:
    parser = JsonToolCallParser(["get_weather"])
    deltas = feed(parser, text, 2)
    assert all(d.kind is DeltaKind.CONTENT for d in deltas)
    assert "".join(d.text for d in deltas) == text
    assert parser.num_tool_calls == 0


def test_header_matcher_says_when_it_cannot_be_a_call_yet() -> None:
    assert match_call_header('{"na') is None
    assert match_call_header('{"name": "f", "argu') is None
    assert match_call_header('{"name": "f", "other"') is False
    assert match_call_header("[1]") is False
    name, end = match_call_header('{"name": "f\\u00e9", "arguments": {')
    assert name == "fé" and end == len('{"name": "f\\u00e9", "arguments": ')


def test_typed_chunks_carry_the_token_once_and_turn_stop_into_tool_calls() -> None:
    usage = Usage(3, 1)
    parser = JsonToolCallParser(["f"])
    chunks, reason = typed_chunks(
        parser,
        index=0,
        token_id=7,
        text='{"name": "f", "arguments": {"a"',
        usage=usage,
        logprobs=(),
        is_finished=False,
        finish_reason=None,
    )
    # One token released the call's start and its first arguments: one chunk carries both.
    assert [c.token_ids for c in chunks] == [(7,)]
    assert chunks[0].tool_call.name == "f" and chunks[0].tool_call.arguments == '{"a"'
    chunks, reason = typed_chunks(
        parser,
        index=0,
        token_id=8,
        text=": 1}}",
        usage=usage,
        logprobs=(),
        is_finished=True,
        finish_reason=FinishReason.STOP,
    )
    assert reason is FinishReason.TOOL_CALLS
    assert chunks[0].tool_call.arguments == ": 1}"
    held, reason = typed_chunks(
        JsonToolCallParser(["f"]),
        index=1,
        token_id=9,
        text="{",
        usage=usage,
        logprobs=(),
        is_finished=False,
        finish_reason=None,
    )
    assert [(c.token_ids, c.text, c.kind) for c in held] == [
        ((9,), "", DeltaKind.CONTENT)
    ]  # held back, token still sent
    plain, reason = typed_chunks(
        ContentParser(),
        index=0,
        token_id=1,
        text="hi",
        usage=usage,
        logprobs=(),
        is_finished=True,
        finish_reason=FinishReason.LENGTH,
    )
    assert plain[0].text == "hi" and reason is FinishReason.LENGTH


def test_tool_prompt_puts_tools_in_the_system_message_and_rewrites_past_calls() -> None:
    tools = (Tool("get_weather", "Weather now", '{"type": "object"}'),)
    messages = (
        ChatMessage("user", "Weather in Oslo?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Oslo"}'),)),
        ChatMessage("tool", "12 C", tool_call_id="c1"),
    )
    out = with_tools(messages, tools)
    assert out[0].role == "system" and out[0].content.startswith(TOOL_INSTRUCTIONS)
    assert json.loads(out[0].content[len(TOOL_INSTRUCTIONS) :]) == [
        {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}}
    ]
    assert json.loads(out[2].content) == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert out[3].content == "get_weather returned: 12 C"
    existing = with_tools((ChatMessage("system", "Be brief."), *messages[:1]), tools)
    assert existing[0].content.startswith("Be brief.\n\n# Tools") and len(existing) == 2


def test_bundled_template_renders_tools_through_the_tool_prompt(engine_core) -> None:
    chat = ChatInput(messages=(ChatMessage("user", "Weather in Oslo?"),), tools=(Tool("get_weather", "Weather now"),))
    text = engine_core.tokenizer.render_chat(chat)
    assert text.startswith("<|im_start|>system\n# Tools")
    assert '"name": "get_weather"' in text and text.endswith("<|im_start|>assistant\n")
