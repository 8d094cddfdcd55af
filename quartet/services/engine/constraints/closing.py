"""The shortest way out of a grammar: what lets a constrained output always close within its budget.

A JSON answer cut off by ``max_tokens`` is not JSON, and a client that asked for a schema
cannot use it. So each constrained sequence keeps, for its current grammar state, the
tokens of a short ending that completes the grammar (``"}`` inside a string, ``, "price": 0}``
before a missing required field). When the tokens left in the budget reach the ending's
length, the engine writes the ending instead of sampling, so the output parses; the
sequence then finishes with reason "length" and says the ending was forced.

The ending is found greedily on a fork of the matcher: take the grammar's forced text
(``find_jump_forward_string``: keys of required fields, separators), otherwise the first
character of ``PREFERENCE`` the grammar accepts. The order closes before it opens: a quote
ends a string, ``}``/``]`` end containers, ``,`` ends a number, and a digit is the shortest
value. It is not always the shortest ending (``""`` where ``0`` would do), but it is short,
deterministic and cheap (tens of microseconds for a JSON schema). A grammar whose greedy walk
does not end within ``MAX_ENDING_CHARS`` (a regular expression such as ``a+b`` can loop) has
no ending, and then nothing is forced.

Text becomes tokens by greedy longest match over the vocabulary's bytes. Because the rest of a
greedy tokenization is the greedy tokenization of the rest, writing the ending's first token
leaves exactly the ending's remaining tokens as the next state's ending: the budget check
holds step by step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import xgrammar as xgr

#: Characters tried, in order, where the grammar does not force the next text.
PREFERENCE = tuple('"}],0: 123456789.-nultrefas{[eE+') + tuple("bcdghijkmopqvwxyz_ABCDFGHIJKLMNOPQRSTUVWXYZ")
#: An ending longer than this is treated as none (a grammar that does not close greedily).
MAX_ENDING_CHARS = 2048


def shortest_ending(matcher: xgr.GrammarMatcher) -> str | None:
    """Text that completes the grammar from ``matcher``'s state (left untouched); None if none is found."""
    walker = matcher.fork()
    parts: list[str] = []
    length = 0
    while not walker.is_completed():
        forced = walker.find_jump_forward_string()
        if forced and walker.accept_string(forced):
            step = forced
        else:
            for char in PREFERENCE:
                trial = walker.fork()
                if trial.accept_string(char):
                    walker, step = trial, char
                    break
            else:
                return None
        parts.append(step)
        length += len(step)
        if length > MAX_ENDING_CHARS:
            return None
    return "".join(parts)


class EndingTokenizer:
    """Greedy longest-match tokenization of ending text over a vocabulary's token bytes."""

    def __init__(self, token_bytes: Sequence[bytes], *, excluded_ids: Iterable[int] = ()) -> None:
        excluded = set(excluded_ids)
        self._ids: dict[bytes, int] = {}
        for token_id, data in enumerate(token_bytes):
            if data and token_id not in excluded:
                self._ids.setdefault(bytes(data), token_id)
        self._longest = max((len(b) for b in self._ids), default=1)

    def encode(self, text: str) -> list[int] | None:
        """The token ids spelling ``text``; None if some byte has no token of its own."""
        data = text.encode()
        ids: list[int] = []
        start = 0
        while start < len(data):
            for end in range(min(len(data), start + self._longest), start, -1):
                token_id = self._ids.get(data[start:end])
                if token_id is not None:
                    ids.append(token_id)
                    start = end
                    break
            else:
                return None
        return ids


def ending_tokens(matcher: xgr.GrammarMatcher, tokenizer: EndingTokenizer) -> list[int] | None:
    """The tokens of ``shortest_ending``; [] when the grammar is already complete, None when there is none."""
    text = shortest_ending(matcher)
    return None if text is None else tokenizer.encode(text)
