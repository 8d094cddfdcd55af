"""The model's tokenizer and prompt format, behind the few calls the engine makes.

``Tokenizer.load`` picks the implementation for a model directory:
``HFTokenizer`` (a Hugging Face tokenizer and its chat template) for most
models, ``harmony.HarmonyTokenizer`` (openai-harmony, offline vocabulary) for
gpt-oss. Besides encode/decode, a tokenizer ``prepare``s a Generate request:
prompt ids, the output parser each choice gets, and the grammar its
constraint means in this model's tool-call format.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quartet.services.common.errors import InvalidArgument
from quartet.services.engine.constraints.spec import GrammarSpec, ToolCallFormat, grammar_spec
from quartet.services.engine.json_tool_calls import JsonToolCallParser
from quartet.services.engine.output_parser import OutputParser
from quartet.services.engine.request import ChatInput, ChatMessage, GenerateRequest, PromptInput, TextInput, TokenInput
from quartet.services.engine.tool_prompt import with_tools

if TYPE_CHECKING:
    from quartet.services.engine.constraints import ConstraintCompiler

log = logging.getLogger(__name__)

ParserFactory = Callable[[], OutputParser]


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """What the engine needs to run a request, in this model's format."""

    token_ids: list[int]
    #: A new parser per choice; None means plain content (no parsing).
    new_parser: ParserFactory | None = None
    #: The constraint as a grammar over the generated tokens; None when unconstrained.
    grammar: GrammarSpec | None = None
    #: Tokens that end a constrained output once the grammar is complete.
    grammar_stop_ids: tuple[int, ...] = ()


class Tokenizer(ABC):
    """Encode, decode, render chats, and prepare requests for one model."""

    eos_token_ids: tuple[int, ...]
    supports_tools: bool = True
    tool_format: ToolCallFormat = ToolCallFormat.JSON_ENVELOPE

    @staticmethod
    def load(model_dir: Path) -> Tokenizer:
        if _model_type(model_dir) == "gpt_oss":
            from quartet.services.engine.harmony.tokenizer import HarmonyTokenizer

            return HarmonyTokenizer.load(model_dir)
        return HFTokenizer.load(model_dir)

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    def has_chat_template(self) -> bool:
        return True

    @abstractmethod
    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]: ...

    @abstractmethod
    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str: ...

    def token_text(self, token_id: int) -> str:
        """The text of one token as it would appear in output (for logprobs)."""
        return self.decode([token_id], skip_special_tokens=False)

    @abstractmethod
    def render_chat(self, chat: ChatInput) -> str:
        """The conversation as the model sees it, ending with the assistant's generation prompt."""

    def encode_input(self, prompt: PromptInput, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids for any input kind; chat is rendered with the template and never gets extra specials."""
        if isinstance(prompt, TextInput):
            return self.encode(prompt.text, add_special_tokens=add_special_tokens)
        if isinstance(prompt, TokenInput):
            return list(prompt.ids)
        return self.encode(self.render_chat(prompt), add_special_tokens=False)

    def prepare(self, request: GenerateRequest) -> PreparedPrompt:
        """Prompt ids (raw text gets the tokenizer's special tokens, as in vLLM's completions), parser, grammar."""
        assert request.input is not None  # validated before
        ids = self.encode_input(request.input, add_special_tokens=True)
        tools = request.input.tools if isinstance(request.input, ChatInput) else ()
        new_parser = None
        if tools:
            names = [t.name for t in tools]
            parallel = isinstance(request.input, ChatInput) and request.input.parallel_tool_calls
            new_parser = lambda: JsonToolCallParser(names, parallel=parallel)  # noqa: E731
        grammar = grammar_spec(request.constraint, tools, self.tool_format) if request.constraint else None
        return PreparedPrompt(ids, new_parser, grammar, self.eos_token_ids)

    # --- constraints --------------------------------------------------------

    def constraint_compiler(self, vocab_size: int) -> ConstraintCompiler:
        """The grammar compiler for this vocabulary, built on first use (the vocabulary scan takes a while)."""
        with _compiler_lock:
            compiler = getattr(self, "_constraint_compiler", None)
            if compiler is None:
                compiler = self._new_constraint_compiler(vocab_size)
                self._constraint_compiler = compiler
            return compiler

    @abstractmethod
    def _new_constraint_compiler(self, vocab_size: int) -> ConstraintCompiler: ...

    def close(self) -> None:
        """Stop the grammar compiler's mask workers, if it was ever built."""
        compiler = getattr(self, "_constraint_compiler", None)
        if compiler is not None:
            compiler.close()


_compiler_lock = threading.Lock()


class HFTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer loaded from a local model directory."""

    def __init__(self, hf_tokenizer, eos_token_ids: Sequence[int]) -> None:
        self._tok = hf_tokenizer
        self.eos_token_ids = tuple(dict.fromkeys(eos_token_ids))
        template = hf_tokenizer.chat_template or ""
        if isinstance(template, dict):  # several named templates: "default" is the chat one
            template = template.get("default", "")
        self._template = template
        # Templates without tools get them in the system message (tool_prompt.py).
        self.template_supports_tools = "tools" in template
        self.supports_developer_role = "developer" in template

    @classmethod
    def load(cls, model_dir: Path) -> HFTokenizer:
        from transformers import AutoTokenizer

        hf_tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        return cls(hf_tokenizer, _eos_ids(model_dir, hf_tokenizer))

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    @property
    def has_chat_template(self) -> bool:
        return bool(self._template)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def render_chat(self, chat: ChatInput) -> str:
        if not self._template:
            raise InvalidArgument(
                "chat: the loaded model has no chat template; send text or token_ids instead", field="chat"
            )
        source = chat.messages
        tools = None
        if self.template_supports_tools:
            tools = [_tool_dict(t.name, t.description, t.parameters_json) for t in chat.tools] or None
        else:
            source = tuple(with_tools(chat.messages, chat.tools, parallel=chat.parallel_tool_calls))
        messages = [self._message_dict(m) for m in source]
        try:
            return self._tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # jinja raises for conversations the template rejects
            raise InvalidArgument(
                f"chat.messages: the model's chat template rejected the conversation: {error}", field="chat.messages"
            ) from error

    def _message_dict(self, message: ChatMessage) -> dict:
        role = message.role
        # Templates without a developer role get OpenAI's older name for the same thing.
        if role == "developer" and not self.supports_developer_role:
            role = "system"
        entry: dict = {"role": role, "content": message.content}
        if message.name:
            entry["name"] = message.name
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.reasoning:
            entry["reasoning_content"] = message.reasoning
        if message.tool_calls:
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _json_or_text(c.arguments)}}
                for c in message.tool_calls
            ]
        return entry

    def _new_constraint_compiler(self, vocab_size: int) -> ConstraintCompiler:
        from quartet.services.engine.constraints import ConstraintCompiler

        return ConstraintCompiler.from_hf_tokenizer(self._tok, vocab_size=vocab_size, stop_token_ids=self.eos_token_ids)


def _tool_dict(name: str, description: str, parameters_json: str) -> dict:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": _json_or_text(parameters_json) or {}},
    }


def _json_or_text(text: str):
    """Templates expect arguments and schemas as objects; keep text that is not JSON as is."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _model_type(model_dir: Path) -> str:
    config = model_dir / "config.json"
    if not config.is_file():
        return ""
    return str(json.loads(config.read_text()).get("model_type", ""))


def _eos_ids(model_dir: Path, hf_tokenizer) -> list[int]:
    """End-of-sequence ids: the generation config's (may be a list) and the tokenizer's own."""
    ids: list[int] = []
    config_path = model_dir / "generation_config.json"
    if config_path.is_file():
        value = json.loads(config_path.read_text()).get("eos_token_id")
        ids.extend(value if isinstance(value, list) else [value] if value is not None else [])
    if hf_tokenizer.eos_token_id is not None:
        ids.append(hf_tokenizer.eos_token_id)
    if not ids:
        log.warning("model has no end-of-sequence token; generation stops only at max_tokens or stop strings")
    return [int(i) for i in ids]
