"""Chat Completions for ``model: "agent/<name>"``: one turn of a router topic agent.

An agent keeps its own memory, so only the request's last message (a user
message) is the input; the conversation lives in the memory service under the
session and topic ids. Those come from ``metadata`` (``session_id``,
``topic_id``, ``memory_mode``) or from the headers ``X-Session-Id``,
``X-Topic-Id`` and ``X-Memory-Mode`` (metadata wins). Sampling is the agent's
configuration: a request that sets it is refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from quartet.router.v1 import router_pb2

from quartet.services.gateway import convert
from quartet.services.gateway.chat_completion import CompletionInfo
from quartet.services.common.errors import Internal
from quartet.services.common.finish_reasons import openai_finish_reason
from quartet.services.common.rpc import error_from_status_name
from quartet.services.gateway.errors import BadRequest, UnsupportedParameter
from quartet.services.gateway.router_client import RouterClient
from quartet.services.gateway.schemas.chat_request import ChatCompletionRequest
from quartet.services.gateway.schemas.chat_response import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
)

# Fields the agent's configuration decides; naming them for an agent is an error.
AGENT_DECIDES = (
    "temperature", "top_p", "n", "seed", "stop", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "response_format", "tools", "tool_choice", "functions", "function_call",
)
IDS = {"session_id": "x-session-id", "topic_id": "x-topic-id", "memory_mode": "x-memory-mode"}


def run_request(chat: ChatCompletionRequest, agent: str, headers: Mapping[str, str], request_id: str, max_tokens: int | None) -> router_pb2.RunRequest:
    """The router's RunRequest for a chat request to ``agent/<agent>``; BadRequest if it cannot be one."""
    for name in AGENT_DECIDES:
        value = getattr(chat, name)
        if value is not None and not (name == "n" and value == 1):
            raise UnsupportedParameter(
                f"'{name}' is set by the agent's configuration; leave it out for model 'agent/{agent}'", field=name
            )
    last = chat.messages[-1]
    if last.role != "user" or not last.text().strip():
        raise BadRequest(
            "an agent takes one user message as its input: the last message must be a non-empty user message "
            "(the agent remembers earlier turns itself, by session_id and topic_id)",
            field="messages",
        )
    metadata = chat.metadata or {}
    ids = {key: metadata.get(key) or headers.get(header, "") for key, header in IDS.items()}
    return router_pb2.RunRequest(
        agent=agent,
        input=last.text(),
        session_id=ids["session_id"],
        topic_id=ids["topic_id"],
        memory_mode=ids["memory_mode"],
        request_id=request_id,
        max_tokens=max_tokens or 0,
    )


class AgentTurn:
    """One Run stream, read once, as OpenAI chunks or one completion."""

    def __init__(self, router: RouterClient, request: router_pb2.RunRequest, info: CompletionInfo) -> None:
        self.info = info
        self.usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
        self._events = router.run(request)
        self._first: router_pb2.RunResponse | None = None
        self._address = router.address

    async def start(self) -> None:
        """Read the first event now, so a refused request is a real HTTP error, not a stream event."""
        self._first = await anext(self._events, None)

    async def close(self) -> None:
        await self._events.aclose()  # cancels the router call when the client went away

    async def _all(self) -> AsyncIterator[router_pb2.RunResponse]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        async for event in self._events:
            yield event

    async def deltas(self) -> AsyncIterator[str | router_pb2.RunDone]:
        """Text pieces, then the RunDone; a RunError becomes a typed error (and an aborted turn
        one when its finish reason is read: ``common.finish_reasons``)."""
        async for event in self._all():
            kind = event.WhichOneof("event")
            if kind == "token":
                yield event.token.text
            elif kind == "done":
                done = event.done
                self.usage = convert.usage(done.usage)
                yield done
                return
            elif kind == "error":
                raise error_from_status_name("UNAVAILABLE", event.error.message, service="router", address=self._address)
        raise Internal("the router ended the turn without a done event; see the router log")

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        info = self.info
        return ChatCompletionChunk(id=info.id, created=info.created, model=info.model, choices=choices, usage=usage)

    async def chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        yield self._chunk([ChunkChoice(index=0, delta=Delta(role="assistant", content=""))])
        async for piece in self.deltas():
            if isinstance(piece, str):
                yield self._chunk([ChunkChoice(index=0, delta=Delta(content=piece))])
            else:
                yield self._chunk([ChunkChoice(index=0, delta=Delta(), finish_reason=openai_finish_reason(piece.finish_reason, service="router"))])
        if self.info.include_usage:
            yield self._chunk([], usage=self.usage)

    async def completion(self) -> ChatCompletion:
        pieces: list[str] = []
        finish = "stop"
        async for piece in self.deltas():
            if isinstance(piece, str):
                pieces.append(piece)
            else:
                finish = openai_finish_reason(piece.finish_reason, service="router")
        info = self.info
        choice = Choice(index=0, message=AssistantMessage(content="".join(pieces)), finish_reason=finish)
        return ChatCompletion(id=info.id, created=info.created, model=info.model, choices=[choice], usage=self.usage)
