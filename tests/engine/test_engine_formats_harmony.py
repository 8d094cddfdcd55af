"""Harmony (gpt-oss): the offline vocabulary, rendering against openai-harmony's own, streaming parsing.

Everything runs without network: the o200k vocabulary is rebuilt from
quicktok-v1 into a temporary QUARTET_HOME and checked by openai-harmony's hash.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from openai_harmony import (
    Author,
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    RenderConversationConfig,
    Role,
    SystemContent,
    ToolDescription,
)

from quartet.services.engine.constraints import ToolCallFormat
from quartet.services.engine.api.events import DeltaKind
from quartet.services.engine.text.harmony import vocab
from quartet.services.engine.text.harmony.parser import HarmonyOutputParser
from quartet.services.engine.text.harmony.render import Prefill, render_prompt
from quartet.services.engine.text.harmony.tokenizer import CALL, RETURN, HarmonyTokenizer
from quartet.services.engine.text.output_parser import Delta
from quartet.services.engine.api.request import ChatInput, ChatMessage, Constraint, GenerateRequest, TextInput, Tool, ToolCall

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "The city"}, "unit": {"enum": ["c", "f"]}},
    "required": ["location"],
}
WEATHER = Tool("get_weather", "Gets the current weather", json.dumps(WEATHER_SCHEMA))


@pytest.fixture(scope="module")
def encoding():
    return vocab.load_encoding()


@pytest.fixture(scope="module")
def tokenizer(encoding) -> HarmonyTokenizer:
    return HarmonyTokenizer(encoding)


def test_vocab_file_is_rebuilt_from_quicktok_and_matches_the_published_hash(tmp_path) -> None:
    path = vocab.ensure_vocab_file(tmp_path)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == vocab.VOCAB_SHA256
    assert data.count(b"\n") == vocab.NUM_BASE_TOKENS
    mtime = path.stat().st_mtime_ns
    assert vocab.ensure_vocab_file(tmp_path) == path and path.stat().st_mtime_ns == mtime  # written once


def test_encoding_round_trips_text_and_knows_the_special_tokens(encoding) -> None:
    text = "Hello, wörld! 日本語 🚀"
    assert encoding.decode(encoding.encode(text)) == text
    assert encoding.encode("<|call|><|return|>", allowed_special="all") == [CALL, RETURN]


def test_conversation_renders_as_openai_harmony_renders_it(encoding) -> None:
    """Our mapping of an OpenAI-style chat equals the conversation built with openai-harmony's own API."""
    chat = ChatInput(
        messages=(
            ChatMessage("system", "Answer briefly."),
            ChatMessage("developer", "Use metric units."),
            ChatMessage("user", "Weather in Paris?"),
            ChatMessage(
                "assistant",
                "",
                reasoning="I should call get_weather.",
                tool_calls=(ToolCall("call_1", "get_weather", '{"location": "Paris"}'),),
            ),
            ChatMessage("tool", '{"temperature": 21}', tool_call_id="call_1"),
            ChatMessage("assistant", "It is 21 °C in Paris."),
            ChatMessage("user", "And tomorrow?"),
        ),
        tools=(WEATHER,),
    )
    ours = render_prompt(encoding, chat)

    reference = Conversation.from_messages(
        [
            Message.from_role_and_content(
                Role.SYSTEM, SystemContent.new().with_reasoning_effort(ReasoningEffort.MEDIUM)
            ),
            Message.from_role_and_content(
                Role.DEVELOPER,
                DeveloperContent.new()
                .with_instructions("Answer briefly.\n\nUse metric units.")
                .with_function_tools([ToolDescription.new("get_weather", "Gets the current weather", WEATHER_SCHEMA)]),
            ),
            Message.from_role_and_content(Role.USER, "Weather in Paris?"),
            Message.from_role_and_content(Role.ASSISTANT, "I should call get_weather.").with_channel("analysis"),
            Message.from_role_and_content(Role.ASSISTANT, '{"location": "Paris"}')
            .with_channel("commentary")
            .with_recipient("functions.get_weather")
            .with_content_type("<|constrain|>json"),
            Message.from_author_and_content(Author.new(Role.TOOL, "functions.get_weather"), '{"temperature": 21}')
            .with_channel("commentary")
            .with_recipient("assistant"),
            Message.from_role_and_content(Role.ASSISTANT, "It is 21 °C in Paris.").with_channel("final"),
            Message.from_role_and_content(Role.USER, "And tomorrow?"),
        ]
    )
    assert ours == encoding.render_conversation_for_completion(reference, Role.ASSISTANT)
    text = encoding.decode(ours)
    assert "type get_weather = (_: {" in text
    assert "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>" in text
    assert text.endswith("<|start|>user<|message|>And tomorrow?<|end|><|start|>assistant")


def test_response_format_closes_the_developer_message_and_prefill_opens_the_reply(encoding) -> None:
    schema = json.dumps({"type": "object", "properties": {"items": {"type": "array"}}})
    chat = ChatInput(
        messages=(ChatMessage("system", "You help with shopping."), ChatMessage("user", "Coffee and eggs"))
    )
    text = encoding.decode(render_prompt(encoding, chat, response_format=schema, prefill=Prefill.final()))
    developer = text.split("<|start|>developer<|message|>")[1].split("<|end|>")[0]
    assert developer.startswith("# Instructions\n\nYou help with shopping.")
    assert developer.endswith(
        "# Response Formats\n\n## response\n\n// The reply is JSON that fits this schema.\n"
        '{"type":"object","properties":{"items":{"type":"array"}}}'
    )
    assert text.endswith("<|start|>assistant<|channel|>final<|message|>")
    no_developer = ChatInput(messages=(ChatMessage("user", "hi"),))
    text = encoding.decode(render_prompt(encoding, no_developer, response_format=schema))
    assert "<|start|>developer<|message|># Response Formats" in text


def parse(encoding, text: str, prefill: str = "") -> list[Delta]:
    """Feed the completion token by token, as the engine does; return every delta."""
    prefill_ids = encoding.encode(prefill, allowed_special="all") if prefill else []
    parser = HarmonyOutputParser(encoding, prefill_ids)
    deltas: list[Delta] = []
    for token_id in encoding.encode(text, allowed_special="all"):
        deltas += parser.push(token_id, "")
    deltas += parser.finish()
    assert parser.num_tool_calls == sum(1 for d in deltas if d.tool_call is not None and d.tool_call.name)
    return deltas


def joined(deltas: list[Delta], kind: DeltaKind) -> str:
    return "".join(d.text for d in deltas if d.kind is kind)


def test_parser_splits_reasoning_and_content_token_by_token(encoding) -> None:
    completion = Conversation.from_messages(
        [
            Message.from_role_and_content(Role.ASSISTANT, "User greets. Reply kindly.").with_channel("analysis"),
            Message.from_role_and_content(Role.ASSISTANT, "Hello! How can I help?").with_channel("final"),
        ]
    )
    # openai-harmony renders the assistant's messages; the prompt held the first "<|start|>assistant".
    tokens = encoding.render_conversation(completion, RenderConversationConfig(auto_drop_analysis=False))
    text = encoding.decode(tokens).removeprefix("<|start|>assistant")
    deltas = parse(encoding, text)
    assert joined(deltas, DeltaKind.REASONING) == "User greets. Reply kindly."
    assert joined(deltas, DeltaKind.CONTENT) == "Hello! How can I help?"
    assert len([d for d in deltas if d.kind is DeltaKind.REASONING]) > 1  # streamed, not one block at the end


def test_parser_streams_a_tool_call_name_and_arguments(encoding) -> None:
    arguments = '{"location": "San Francisco", "unit": "c"}'
    completion = [
        Message.from_role_and_content(Role.ASSISTANT, "Need the weather.").with_channel("analysis"),
        Message.from_role_and_content(Role.ASSISTANT, "Checking the weather.").with_channel("commentary"),
        Message.from_role_and_content(Role.ASSISTANT, arguments)
        .with_channel("commentary")
        .with_recipient("functions.get_weather")
        .with_content_type("<|constrain|>json"),
    ]
    text = "".join(encoding.decode(encoding.render(m)) for m in completion).removeprefix("<|start|>assistant")
    assert text.endswith("<|call|>")
    deltas = parse(encoding, text)
    calls = [d.tool_call for d in deltas if d.tool_call is not None]
    assert calls[0].name == "get_weather" and calls[0].id.startswith("call_") and calls[0].index == 0
    assert "".join(c.arguments for c in calls) == arguments
    assert len(calls) > 2  # the arguments arrive in pieces
    assert joined(deltas, DeltaKind.REASONING) == "Need the weather."
    assert joined(deltas, DeltaKind.CONTENT) == "Checking the weather."  # a preamble is for the user


def test_parser_numbers_several_calls(encoding) -> None:
    text = (
        " to=functions.a<|channel|>commentary <|constrain|>json<|message|>{}<|call|>"
        '<|start|>assistant to=functions.b<|channel|>commentary <|constrain|>json<|message|>{"x": 1}<|call|>'
    )
    calls = [d.tool_call for d in parse(encoding, text) if d.tool_call is not None]
    assert [(c.index, c.name) for c in calls if c.name] == [(0, "a"), (1, "b")]
    assert "".join(c.arguments for c in calls if c.index == 1) == '{"x": 1}'


def test_parser_after_a_prefilled_header_sees_only_the_body(encoding) -> None:
    prefill = Prefill.tool_call("get_weather").text
    deltas = parse(encoding, '{"location": "Oslo"}<|call|>', prefill=prefill)
    calls = [d.tool_call for d in deltas if d.tool_call is not None]
    assert calls[0].name == "get_weather"
    assert "".join(c.arguments for c in calls) == '{"location": "Oslo"}'
    final = parse(encoding, "Just text.<|return|>", prefill=Prefill.final().text)
    assert joined(final, DeltaKind.CONTENT) == "Just text."


def test_parser_passes_broken_output_through_as_content(encoding) -> None:
    deltas = parse(encoding, "no header at all")
    assert joined(deltas, DeltaKind.CONTENT) == "no header at all"


def test_tokenizer_prepares_constrained_requests_with_a_prefill(tokenizer: HarmonyTokenizer, encoding) -> None:
    chat = ChatInput(messages=(ChatMessage("user", "Weather in Oslo?"),), tools=(WEATHER,))
    forced = tokenizer.prepare(GenerateRequest(input=chat, constraint=Constraint("tool_name", "get_weather")))
    assert encoding.decode(forced.token_ids).endswith(
        "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>"
    )
    assert forced.grammar_stop_ids == (CALL,)
    assert json.loads(forced.grammar.source) == WEATHER_SCHEMA  # arguments only: the header names the tool
    assert tokenizer.tool_format is ToolCallFormat.ARGUMENTS_ONLY
    schema = tokenizer.prepare(GenerateRequest(input=chat, constraint=Constraint("json_object")))
    assert encoding.decode(schema.token_ids).endswith("<|channel|>final<|message|>")
    assert schema.grammar_stop_ids == (RETURN,)
    plain = tokenizer.prepare(GenerateRequest(input=chat))
    assert encoding.decode(plain.token_ids).endswith("<|start|>assistant") and plain.grammar is None
    assert plain.new_parser is not None
    raw = tokenizer.prepare(GenerateRequest(input=TextInput("<|start|>user<|message|>hi<|end|>")))
    assert raw.token_ids[0] == encoding.encode("<|start|>", allowed_special="all")[0] and raw.new_parser is None


def test_tokenizer_decodes_without_special_tokens(tokenizer: HarmonyTokenizer, encoding) -> None:
    ids = encoding.encode("<|channel|>final<|message|>Hi there<|return|>", allowed_special="all")
    assert tokenizer.decode(ids) == "finalHi there"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<|channel|>final<|message|>Hi there<|return|>"


def test_grammar_over_the_harmony_vocabulary_ends_a_forced_call_with_call(
    tokenizer: HarmonyTokenizer, encoding
) -> None:
    chat = ChatInput(messages=(ChatMessage("user", "Weather?"),), tools=(WEATHER,))
    prepared = tokenizer.prepare(GenerateRequest(input=chat, constraint=Constraint("tool_name", "get_weather")))
    compiler = tokenizer.constraint_compiler(201_088)
    constraint = compiler.new_constraint(prepared.grammar, stop_token_ids=prepared.grammar_stop_ids)

    def allowed() -> set[int]:
        bits = ((constraint.wait().unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1).flatten()
        return set(bits.nonzero().flatten().tolist())

    first = allowed()
    assert first and all(encoding.decode([t]).lstrip().startswith("{") for t in first)
    for token_id in encoding.encode('{"location": "Oslo"}'):
        assert token_id in allowed()
        assert constraint.accept(token_id)
    assert allowed() == {CALL}  # complete: only <|call|> ends it, never <|return|> or a special token
