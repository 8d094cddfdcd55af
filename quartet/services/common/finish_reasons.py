"""engine.v1.FinishReason, the one finish reason of every Quartet protocol, mapped once.

The engine produces it (``engine.api.convert``), the router passes it on in ``RunDone``
(``router.v1`` reuses the engine's enum), and the gateway reports it in OpenAI's words
(``openai_finish_reason``). The lower-case names are the engine's ``events.FinishReason``
values and the router's domain strings.

ABORT: OpenAI has no word for a generation that was cut off by an abort (Abort called,
the engine stopping, a replica going away). Reporting it as "length" (as the agent route
once did) tells the user the answer hit its token limit, so they raise ``max_tokens`` and
get the same cut; reporting "stop" claims the answer is whole. Neither is true, so an
aborted generation is an ``Aborted`` error everywhere: a 503 (``code: "aborted"``) that
says to retry before any text was sent, an error event after some was.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

from quartet.engine.v1 import engine_pb2 as pb

from quartet.services.common.errors import Aborted, Internal

log = logging.getLogger(__name__)

OpenAIFinishReason = Literal["stop", "length", "tool_calls"]

#: The wire value of each name.
BY_NAME: dict[str, int] = {
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "tool_calls": pb.FINISH_REASON_TOOL_CALLS,
    "abort": pb.FINISH_REASON_ABORT,
    "error": pb.FINISH_REASON_ERROR,
}
_NAMES = {value: name for name, value in BY_NAME.items()}
# Everything but ABORT and ERROR is one of OpenAI's words, spelt as our names are.
_OPENAI: dict[int, OpenAIFinishReason] = {BY_NAME[word]: word for word in get_args(OpenAIFinishReason)}


def to_pb(name: str) -> int:
    """The wire value of a name ("stop", "abort", ...); KeyError for any other."""
    return BY_NAME[name]


def name(reason: int) -> str:
    """The name of a wire value; an unset one (a non-conforming engine) reads as "stop"."""
    return _NAMES.get(reason, "stop")


def openai_finish_reason(reason: int, *, service: str = "engine") -> OpenAIFinishReason:
    """OpenAI's finish_reason; ABORT is an ``Aborted`` error (see the module doc), ERROR ``Internal``."""
    if reason in _OPENAI:
        return _OPENAI[reason]
    if reason == pb.FINISH_REASON_ABORT:
        raise Aborted(f"the {service} aborted this generation before it finished (Abort was called or it is shutting down); retry it")
    if reason == pb.FINISH_REASON_ERROR:
        raise Internal(f"the {service} failed while generating and sent no error detail; see the {service} log")
    log.warning("no finish reason sent; reporting stop", extra={"service_name": service})
    return "stop"
