"""The gpt-oss tokenizer: openai-harmony's o200k_harmony encoding and Harmony prompts.

It needs no tokenizer files in the model directory and no network: the
vocabulary comes from quicktok-v1 (``vocab.py``). Constrained requests start
the assistant's message in the prompt (``render.Prefill``): the final channel
for json/regex/choice/grammar constraints, the call's header for a forced tool
call. The grammar then covers the message body, and ends with ``<|return|>``
or ``<|call|>`` respectively. The analysis channel is skipped for them, as it
is when the model is asked to answer directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quartet.services.engine.constraints.spec import ToolCallFormat, grammar_spec
from quartet.services.engine.text.harmony.parser import HarmonyOutputParser
from quartet.services.engine.text.harmony.render import Prefill, render_prompt
from quartet.services.engine.text.harmony.vocab import load_encoding
from quartet.services.engine.api.request import ChatInput, GenerateRequest, TextInput, TokenInput
from quartet.services.engine.text.tokenizer_base import PreparedPrompt, Tokenizer

if TYPE_CHECKING:
    from quartet.services.engine.constraints import ConstraintCompiler

RETURN, CALL, END_OF_TEXT = 200002, 200012, 199999
#: gpt-oss's generation_config eos ids: <|return|>, <|endoftext|>, <|call|>.
DEFAULT_EOS = (RETURN, END_OF_TEXT, CALL)
VOCAB_SIZE = 201_088


class HarmonyTokenizer(Tokenizer):
    tool_format = ToolCallFormat.ARGUMENTS_ONLY

    def __init__(self, encoding, eos_token_ids: Sequence[int] = DEFAULT_EOS, reasoning_effort: str = "medium") -> None:
        self.encoding = encoding
        self.eos_token_ids = tuple(dict.fromkeys(eos_token_ids))
        self.reasoning_effort = reasoning_effort
        # Asked once here: per token, the streaming detokenizer asked the encoding for each id in its
        # window (two decodes a token), which was the largest cost of its host work at 256 streams.
        self._special_ids = frozenset(i for i in range(VOCAB_SIZE) if encoding.is_special_token(i))

    @classmethod
    def load(cls, model_dir: Path | None = None) -> HarmonyTokenizer:
        eos: Sequence[int] = DEFAULT_EOS
        config = model_dir / "generation_config.json" if model_dir else None
        if config is not None and config.is_file():
            value = json.loads(config.read_text()).get("eos_token_id")
            if isinstance(value, list) and value:
                eos = [int(v) for v in value]
        return cls(load_encoding(), eos)

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        # Raw text may spell Harmony's special tokens (a hand-rendered prompt): read them as such,
        # as the Hugging Face tokenizer of gpt-oss does. There is no BOS to add.
        return self.encoding.encode(text, allowed_special="all")

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        ids = list(token_ids)
        if skip_special_tokens:
            special = self._special_ids
            ids = [i for i in ids if i not in special]
        return self.encoding.decode(ids)

    def render_chat(self, chat: ChatInput) -> str:
        return self.encoding.decode(self.render_ids(chat))

    def render_ids(
        self, chat: ChatInput, *, response_format: str | None = None, prefill: Prefill | None = None
    ) -> list[int]:
        return render_prompt(
            self.encoding,
            chat,
            response_format=response_format,
            prefill=prefill,
            reasoning_effort=self.reasoning_effort,
        )

    def encode_input(self, prompt, *, add_special_tokens: bool = False) -> list[int]:
        if isinstance(prompt, ChatInput):
            return self.render_ids(prompt)
        return super().encode_input(prompt, add_special_tokens=add_special_tokens)

    def prepare(self, request: GenerateRequest) -> PreparedPrompt:
        """Chat is rendered in Harmony and parsed into channels; raw text and token ids come back raw."""
        prompt, constraint = request.input, request.constraint
        if not isinstance(prompt, ChatInput):
            assert isinstance(prompt, (TextInput, TokenInput))
            grammar = grammar_spec(constraint, (), self.tool_format) if constraint else None
            return PreparedPrompt(
                super().encode_input(prompt, add_special_tokens=True), None, grammar, self.eos_token_ids
            )
        grammar = grammar_spec(constraint, prompt.tools, self.tool_format) if constraint else None
        prefill, stop_ids, response_format = None, (RETURN,), None
        if constraint is not None and grammar is not None:
            if constraint.kind == "tool_name":
                prefill, stop_ids = Prefill.tool_call(str(constraint.value)), (CALL,)
            else:
                prefill = Prefill.final()
                if constraint.kind in ("json_schema", "json_object"):
                    response_format = grammar.source
        ids = self.render_ids(prompt, response_format=response_format, prefill=prefill)
        prefill_ids = self.encoding.encode(prefill.text, allowed_special="all") if prefill else []
        encoding = self.encoding
        return PreparedPrompt(ids, lambda: HarmonyOutputParser(encoding, prefill_ids), grammar, stop_ids)

    def _new_constraint_compiler(self, vocab_size: int) -> ConstraintCompiler:
        from quartet.services.engine.constraints import ConstraintCompiler

        # Special tokens are empty strings to xgrammar, so a grammar never spells them; <|return|> and
        # <|call|> end a constrained message through each matcher's own stop tokens.
        return ConstraintCompiler.from_token_bytes(
            vocab_token_bytes(), vocab_size=vocab_size, stop_token_ids=self.eos_token_ids, name="o200k_harmony"
        )


def vocab_token_bytes() -> list[bytes]:
    """Each id's bytes in o200k_harmony (quicktok-v1); special and unused ids are empty."""
    import quicktok

    vocab = quicktok.get_encoding("o200k_harmony")
    out = []
    for token_id in range(VOCAB_SIZE):
        try:
            out.append(b"" if vocab.is_special_token(token_id) else vocab.decode_single_token_bytes(token_id))
        except Exception:  # noqa: BLE001 - reserved ids have no bytes
            out.append(b"")
    return out
