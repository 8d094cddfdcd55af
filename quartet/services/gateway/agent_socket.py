"""Agents over Socket.IO (python-socketio), mounted at ``/socket.io`` beside the HTTP API.

Protocol. The client emits ``run`` {agent, input, session_id, topic_id, memory_mode,
max_tokens}; ``agent`` is a topic agent's name (``agent/`` in front is accepted).
The server answers with ``token`` {text} events, then one ``done`` {finish_reason,
usage} or one ``error`` {message}. Every ``token`` event asks for an acknowledgement
(Socket.IO's ack callback): the client acks each one once it has shown it.

Backpressure. Between the router's stream and the socket sits a bounded queue
(``SOCKETIO_QUEUE_SIZE`` events), and at most ``SOCKETIO_WINDOW`` token events may be
unacknowledged. A client that reads slowly stops acking, the sender waits for
credit, the queue fills, and the producer stops reading the router's stream (gRPC
flow control then holds the router and the engine's stream). So the gateway holds at
most queue + window events per run, however slow the client; ``RunStats`` records
the peaks. A client that acks nothing for ``SOCKETIO_ACK_TIMEOUT_SECONDS`` gets an
``error`` and the run stops. A disconnect cancels the run (and the engine's work).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import socketio
from fastapi import FastAPI
from quartet.router.v1 import router_pb2

from pydantic import ValidationError

from quartet.services.common.errors import QuartetError
from quartet.services.common.finish_reasons import openai_finish_reason
from quartet.services.gateway import convert
from quartet.services.gateway.errors import BadRequest, Unauthorized
from quartet.services.gateway.limits import caller_of, resolve_max_tokens, take_rate_token
from quartet.services.gateway.router_client import AGENT_PREFIX, RouterClient
from quartet.services.gateway.schemas.socket_run import RunEvent
from quartet.services.gateway.settings import GatewaySettings
from quartet.services.gateway.validation import describe

log = logging.getLogger(__name__)

_END = object()  # the producer's last queue item


@dataclass(slots=True)
class RunStats:
    """What one run held in the gateway at most; kept for tests and logged."""

    request_id: str
    num_tokens: int = 0
    max_queue_depth: int = 0
    max_in_flight: int = 0  # token events sent and not yet acknowledged
    num_producer_waits: int = 0  # times the producer found the queue full and waited


def parse_run(data: Any, *, max_tokens_cap: int | None) -> tuple[str, router_pb2.RunRequest]:
    """The agent and RunRequest a ``run`` payload asks for; BadRequest naming the field otherwise.

    The same checks as an HTTP body (strict types and bounds, through ``validation.describe``)
    and the same ``MAX_TOKENS_CAP`` (``limits.resolve_max_tokens``).
    """
    if not isinstance(data, dict):
        raise BadRequest("run takes an object: {agent, input, session_id, topic_id, memory_mode, max_tokens}")
    try:
        event = RunEvent.model_validate(data)
    except ValidationError as error:
        raise describe(error.errors(include_url=False), RunEvent) from None
    agent = event.agent.removeprefix(AGENT_PREFIX)
    if not agent:
        raise BadRequest("run.agent is required: the name of a topic agent (see GET /v1/models)", field="agent")
    max_tokens = resolve_max_tokens(event.max_tokens, field="max_tokens", cap=max_tokens_cap)
    request = router_pb2.RunRequest(
        agent=agent,
        input=event.input,
        session_id=event.session_id or "",
        topic_id=event.topic_id or "",
        memory_mode=event.memory_mode or "",
        request_id=f"sio-{uuid.uuid4().hex}",
        max_tokens=max_tokens or 0,
    )
    return agent, request


def error_event(error: QuartetError) -> dict[str, Any]:
    """The ``error`` event for a typed error: its message, and the field and code where known."""
    event: dict[str, Any] = {"message": error.message}
    if getattr(error, "field", None):
        event["param"] = error.field
    if getattr(error, "code", None):
        event["code"] = error.code
    if getattr(error, "retry_after", None):
        event["retry_after"] = error.retry_after
    return event


class AgentSocket:
    """The Socket.IO server; ``asgi_app`` is mounted by ``create_app``."""

    def __init__(self, app: FastAPI, settings: GatewaySettings) -> None:
        self._app = app
        self._settings = settings
        origins: list[str] | str = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
        # One message may be as large as an HTTP body may (MAX_BODY_BYTES), no larger.
        self.sio = socketio.AsyncServer(
            async_mode="asgi", cors_allowed_origins=origins, logger=False, engineio_logger=False,
            max_http_buffer_size=settings.max_body_bytes,
        )
        self.asgi_app = socketio.ASGIApp(self.sio, socketio_path="socket.io")
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._callers: dict[str, str] = {}  # sid -> who connected (limits.caller_of), for the rate limit
        #: The most recent runs' peaks, newest last.
        self.finished: deque[RunStats] = deque(maxlen=64)
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("run", self._run)

    @property
    def _router(self) -> RouterClient | None:
        return self._app.state.gateway.clients.router

    async def _connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        header = f"Bearer {token}" if isinstance(token, str) and token else environ.get("HTTP_AUTHORIZATION")
        try:
            self._callers[sid] = caller_of(self._app.state.gateway, header, _client_host(environ))
        except Unauthorized as error:
            raise socketio.exceptions.ConnectionRefusedError(error.message) from None

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self._callers.pop(sid, None)
        task = self._runs.pop(sid, None)
        if task is not None:
            task.cancel()

    async def _run(self, sid: str, data: Any = None) -> None:
        try:
            await self._start_run(sid, data)
        except QuartetError as error:
            await self.sio.emit("error", error_event(error), to=sid)
        except Exception as error:  # never leave a client waiting on a run that will not start
            log.exception("socket run failed to start", extra={"error_type": type(error).__name__})
            await self.sio.emit("error", {"message": f"internal error in the gateway ({type(error).__name__}); see its log"}, to=sid)

    async def _start_run(self, sid: str, data: Any) -> None:
        if sid in self._runs:
            raise BadRequest("a run is already going on this connection; wait for its done")
        state = self._app.state.gateway
        # Authenticated at connect; each run then takes one request's worth of the rate limit,
        # as each HTTP call does (limits.guard does the same two steps).
        take_rate_token(state, self._callers.get(sid, "addr:unknown"))
        agent, request = parse_run(data, max_tokens_cap=self._settings.max_tokens_cap)
        router = self._router
        if router is None or not router.enabled:
            raise BadRequest("agents are off: the gateway has no router (ROUTER_ADDRESS)")
        task = asyncio.get_running_loop().create_task(self._serve(sid, router, agent, request))
        self._runs[sid] = task
        task.add_done_callback(lambda _: self._runs.pop(sid, None) if self._runs.get(sid) is task else None)

    async def _serve(self, sid: str, router: RouterClient, agent: str, request: router_pb2.RunRequest) -> None:
        stats = RunStats(request.request_id)
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=self._settings.socketio_queue_size)
        producer = asyncio.get_running_loop().create_task(self._produce(router, request, queue, stats))
        try:
            await self._send(sid, queue, stats)
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            self.finished.append(stats)
            log.info(
                "socket run done",
                extra={
                    "request_id": stats.request_id, "agent": agent, "num_tokens": stats.num_tokens,
                    "max_queue_depth": stats.max_queue_depth, "max_in_flight": stats.max_in_flight,
                    "num_producer_waits": stats.num_producer_waits,
                },
            )

    async def _produce(self, router: RouterClient, request: router_pb2.RunRequest, queue: asyncio.Queue[object], stats: RunStats) -> None:
        try:
            async for event in router.run(request):
                if queue.full():
                    stats.num_producer_waits += 1
                await queue.put(event)  # waits while the client is behind: this is the backpressure
                stats.max_queue_depth = max(stats.max_queue_depth, queue.qsize())
        except QuartetError as error:
            await queue.put(error)
        await queue.put(_END)

    async def _send(self, sid: str, queue: asyncio.Queue[object], stats: RunStats) -> None:
        credits = asyncio.Semaphore(self._settings.socketio_window)
        in_flight = 0

        def acked(*_: Any) -> None:
            nonlocal in_flight
            in_flight -= 1
            credits.release()

        while True:
            item = await queue.get()
            if item is _END:
                await self.sio.emit("error", {"message": "the router ended the turn without a done event"}, to=sid)
                return
            if isinstance(item, QuartetError):
                await self.sio.emit("error", error_event(item), to=sid)
                return
            assert isinstance(item, router_pb2.RunResponse)
            kind = item.WhichOneof("event")
            if kind == "token":
                try:
                    await asyncio.wait_for(credits.acquire(), self._settings.socketio_ack_timeout_seconds)
                except TimeoutError:
                    message = f"the client acknowledged no token for {self._settings.socketio_ack_timeout_seconds:.0f} s; run stopped"
                    await self.sio.emit("error", {"message": message}, to=sid)
                    return
                in_flight += 1
                stats.max_in_flight = max(stats.max_in_flight, in_flight)
                stats.num_tokens += 1
                await self.sio.emit("token", {"text": item.token.text}, to=sid, callback=acked)
            elif kind == "done":
                done = item.done
                try:
                    finish = openai_finish_reason(done.finish_reason, service="router")
                except QuartetError as error:  # an aborted turn is an error here too
                    await self.sio.emit("error", error_event(error), to=sid)
                    return
                usage = convert.usage(done.usage).model_dump()
                await self.sio.emit("done", {"finish_reason": finish, "usage": usage}, to=sid)
                return
            else:
                await self.sio.emit("error", {"message": item.error.message}, to=sid)
                return

    async def close(self) -> None:
        tasks = list(self._runs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _client_host(environ: dict) -> str | None:
    """The peer's address as the ASGI scope gives it (python-socketio passes the scope in environ)."""
    scope = environ.get("asgi.scope") or {}
    client = scope.get("client")
    return client[0] if client else environ.get("REMOTE_ADDR")
