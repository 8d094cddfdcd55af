"""Stop strings and incremental detokenization, without the model."""

from __future__ import annotations

import pytest

from quartet.services.engine.text.detokenizer import IncrementalDetokenizer
from quartet.services.engine.text.stop_strings import StopStringMatcher


def feed(matcher: StopStringMatcher, deltas: list[str]) -> tuple[list[str], str | None]:
    emitted = []
    for delta in deltas:
        result = matcher.push(delta)
        emitted.append(result.text)
        if result.matched is not None:
            return emitted, result.matched
    emitted.append(matcher.flush())
    return emitted, None


def test_stop_inside_one_delta_cuts_before_it() -> None:
    emitted, matched = feed(StopStringMatcher(["END"]), ["abc END tail"])
    assert "".join(emitted) == "abc "
    assert matched == "END"


def test_stop_split_across_deltas_never_leaks_a_prefix() -> None:
    emitted, matched = feed(StopStringMatcher(["<|end|>"]), ["hello <", "|e", "nd", "|> more"])
    assert emitted == ["hello ", "", "", ""]
    assert matched == "<|end|>"


def test_partial_prefix_is_released_once_it_cannot_be_a_stop() -> None:
    emitted, matched = feed(StopStringMatcher(["<|end|>"]), ["a <|e", "x", "b"])
    assert emitted[0] == "a "
    assert emitted[1] == "<|ex"
    assert "".join(emitted) == "a <|exb"
    assert matched is None


def test_held_tail_is_flushed_when_output_ends_otherwise() -> None:
    matcher = StopStringMatcher(["STOP"])
    assert matcher.push("abc ST").text == "abc "
    assert matcher.flush() == "ST"


def test_earliest_of_several_stops_wins() -> None:
    emitted, matched = feed(StopStringMatcher(["world", "lo w"]), ["hello world"])
    assert "".join(emitted) == "hel"
    assert matched == "lo w"


def test_stop_at_very_start_emits_nothing() -> None:
    emitted, matched = feed(StopStringMatcher(["\n"]), ["\nrest"])
    assert emitted == [""]
    assert matched == "\n"


def test_no_stops_passes_text_through() -> None:
    matcher = StopStringMatcher([])
    assert matcher.push("anything <|").text == "anything <|"
    assert matcher.flush() == ""


def test_overlapping_prefix_holds_the_longest_candidate() -> None:
    # "aab": after "aa" both "a" and "aa" are prefixes; the longer one must be held.
    matcher = StopStringMatcher(["aab"])
    assert matcher.push("xaa").text == "x"
    result = matcher.push("b")
    assert result.matched == "aab" and result.text == ""


class ByteTokenizer:
    """Tokens are single UTF-8 bytes, so one character can span several tokens."""

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_detokenizer_holds_incomplete_utf8_until_the_character_completes() -> None:
    tokenizer = ByteTokenizer()
    detok = IncrementalDetokenizer(tokenizer.decode, list(b"ok "))
    text = "héllo → wörld"
    deltas = [detok.push(b) for b in text.encode()]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    arrow = text.encode().index("→".encode())
    assert deltas[arrow] == "" and deltas[arrow + 1] == "" and deltas[arrow + 2] == "→"


def test_detokenizer_flush_releases_a_dangling_partial_character() -> None:
    detok = IncrementalDetokenizer(ByteTokenizer().decode)
    assert detok.push("é".encode()[0]) == ""
    assert detok.flush() == "\ufffd"


def test_detokenizer_on_real_tokenizer_matches_full_decode(engine_core) -> None:
    tokenizer = engine_core.tokenizer
    text = "Once upon a time, naïve café-goers 🎉 wrote `code` — twice.\n  Indented."
    ids = tokenizer.encode(text)
    detok = IncrementalDetokenizer(tokenizer.decode, tokenizer.encode("Prompt:"))
    streamed = "".join(detok.push(i) for i in ids) + detok.flush()
    assert streamed == tokenizer.decode(ids)


@pytest.mark.parametrize("chunking", [1, 2, 3, 7])
def test_stop_matcher_is_independent_of_delta_boundaries(chunking: int) -> None:
    text = "The answer is 42.\nUser: next question"
    deltas = [text[i : i + chunking] for i in range(0, len(text), chunking)]
    emitted, matched = feed(StopStringMatcher(["\nUser:"]), deltas)
    assert "".join(emitted) == "The answer is 42."
    assert matched == "\nUser:"
