"""What every tokenizer gives the engine: encode/decode, chat rendering, and ``prepare``.

A tokenizer ``prepare``s a Generate request: prompt ids, the output parser each
choice gets, and the grammar its constraint means in this model's tool-call
format. The implementations (``tokenizer.HFTokenizer``,
``harmony.tokenizer.HarmonyTokenizer``) import this module; ``tokenizer.load_tokenizer``,
which picks one, sits above them.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quartet.services.engine.constraints.spec import GrammarSpec, ToolCallFormat, grammar_spec
from quartet.services.engine.text.json_tool_calls import JsonToolCallParser
from quartet.services.engine.text.output_parser import OutputParser
from quartet.services.engine.api.request import ChatInput, GenerateRequest, PromptInput, TextInput, TokenInput

if TYPE_CHECKING:
    from quartet.services.engine.constraints import ConstraintCompiler

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
