"""The one finish-reason mapping: every wire value named, OpenAI's words, ABORT as an error."""

from __future__ import annotations

import pytest
from quartet.engine.v1 import engine_pb2 as pb

from quartet.services.common import finish_reasons
from quartet.services.common.errors import Aborted, Internal
from quartet.services.engine.api import convert as engine_convert
from quartet.services.engine.api.events import FinishReason
from quartet.services.router import convert as router_convert

SENT = [value for value in pb.FinishReason.values() if value != pb.FINISH_REASON_UNSPECIFIED]


@pytest.mark.parametrize("value", SENT)
def test_every_wire_value_has_a_name_that_round_trips(value: int) -> None:
    assert finish_reasons.to_pb(finish_reasons.name(value)) == value


def test_the_engine_sends_every_reason_under_its_own_name() -> None:
    sent = {reason: engine_convert._FINISH[reason] for reason in FinishReason}
    assert sorted(sent.values()) == sorted(SENT)
    assert all(finish_reasons.name(value) == reason.value for reason, value in sent.items())


def test_the_router_reads_the_engine_reason_by_the_same_name() -> None:
    complete = pb.Complete(finish_reason=pb.FINISH_REASON_ABORT, usage=pb.Usage(prompt_tokens=3, completion_tokens=2))
    finished = router_convert.finished_from_pb(complete)
    assert (finished.finish_reason, finished.prompt_tokens, finished.completion_tokens) == ("abort", 3, 2)


@pytest.mark.parametrize(
    ("value", "word"),
    [(pb.FINISH_REASON_STOP, "stop"), (pb.FINISH_REASON_LENGTH, "length"), (pb.FINISH_REASON_TOOL_CALLS, "tool_calls")],
)
def test_openai_words(value: int, word: str) -> None:
    assert finish_reasons.openai_finish_reason(value) == word


def test_an_abort_is_a_retryable_error_never_length() -> None:
    with pytest.raises(Aborted) as caught:
        finish_reasons.openai_finish_reason(pb.FINISH_REASON_ABORT, service="router")
    assert caught.value.http_status == 503 and caught.value.code == "aborted"
    assert "router" in caught.value.message and "retry" in caught.value.message


def test_an_engine_error_without_detail_is_internal() -> None:
    with pytest.raises(Internal):
        finish_reasons.openai_finish_reason(pb.FINISH_REASON_ERROR)


def test_an_unset_reason_reads_as_stop() -> None:
    assert finish_reasons.openai_finish_reason(pb.FINISH_REASON_UNSPECIFIED) == "stop"
    assert finish_reasons.name(pb.FINISH_REASON_UNSPECIFIED) == "stop"
