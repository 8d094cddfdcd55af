"""Incremental detokenization: turn a growing list of token ids into text deltas.

Decoding token by token is wrong for byte-level BPE (a character can span
several tokens) and for SentencePiece (a token's leading space depends on what
precedes it). We follow the offsets scheme of text-generation-inference and
vLLM: keep a short window of already-read tokens as context, decode the window
with and without the newest tokens, and release only the difference, holding
back while the text ends in an incomplete UTF-8 sequence (U+FFFD).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]

#: Prompt tokens kept as context so the first output token decodes as it would mid-text.
PROMPT_CONTEXT_TOKENS = 5
_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Pure Python; ``decode`` is the tokenizer's (ids -> text, special tokens skipped)."""

    def __init__(self, decode: Decode, prompt_ids: Sequence[int] = ()) -> None:
        self._decode = decode
        context = list(prompt_ids[-PROMPT_CONTEXT_TOKENS:]) if prompt_ids else []
        self._tokens: list[int] = context
        self._prefix_offset = 0
        self._read_offset = len(context)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (often empty while a character is partial)."""
        self._tokens.append(token_id)
        return self._release(final=False)

    def flush(self) -> str:
        """Release whatever is held back (an incomplete character decodes as U+FFFD)."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        window = self._tokens[self._prefix_offset :]
        prefix_text = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        new_text = self._decode(window)
        if len(new_text) <= len(prefix_text):
            return ""
        if new_text.endswith(_REPLACEMENT) and not final:
            return ""
        delta = new_text[len(prefix_text) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._tokens)
        # Only the window is ever decoded; drop what can no longer be part of it.
        if self._prefix_offset > 64:
            del self._tokens[: self._prefix_offset]
            self._read_offset -= self._prefix_offset
            self._prefix_offset = 0
        return delta
