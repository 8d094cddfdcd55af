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

from quartet.services.common.errors import QuartetError
from quartet.services.gateway.errors import Unauthorized
from quartet.services.gateway.router_client import AGENT_PREFIX, RouterClient
from quartet.services.gateway.settings import GatewaySettings

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


class RunRequestError(ValueError):
    """The ``run`` event's payload is malformed."""


def parse_run(data: Any) -> tuple[str, router_pb2.RunRequest]:
    """The agent and RunRequest a ``run`` payload asks for; RunRequestError says what is wrong."""
    if not isinstance(data, dict):
        raise RunRequestError("run takes an object: {agent, input, session_id, topic_id, memory_mode}")
    fields: dict[str, str] = {}
    for key in ("agent", "input", "session_id", "topic_id", "memory_mode"):
        value = data.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise RunRequestError(f"run.{key} must be a string")
        fields[key] = value
    max_tokens = data.get("max_tokens") or 0
    if not isinstance(max_tokens, int) or max_tokens < 0:
        raise RunRequestError("run.max_tokens must be a positive integer")
    agent = fields["agent"].removeprefix(AGENT_PREFIX)
    if not agent:
        raise RunRequestError("run.agent is required: the name of a topic agent (see GET /v1/models)")
    request = router_pb2.RunRequest(
        agent=agent,
        input=fields["input"],
        session_id=fields["session_id"],
        topic_id=fields["topic_id"],
        memory_mode=fields["memory_mode"],
        request_id=f"sio-{uuid.uuid4().hex}",
        max_tokens=max_tokens,
    )
    return agent, request


class AgentSocket:
    """The Socket.IO server; ``asgi_app`` is mounted by ``create_app``."""

    def __init__(self, app: FastAPI, settings: GatewaySettings) -> None:
        self._app = app
        self._settings = settings
        origins: list[str] | str = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=origins, logger=False, engineio_logger=False)
        self.asgi_app = socketio.ASGIApp(self.sio, socketio_path="socket.io")
        self._runs: dict[str, asyncio.Task[None]] = {}
        #: The most recent runs' peaks, newest last.
        self.finished: deque[RunStats] = deque(maxlen=64)
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("run", self._run)

    @property
    def _router(self) -> RouterClient | None:
        return self._app.state.gateway.clients.router

    async def _connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        keys = self._app.state.gateway.api_keys
        if not keys.enabled:
            return
        token = auth.get("token") if isinstance(auth, dict) else None
        header = f"Bearer {token}" if token else environ.get("HTTP_AUTHORIZATION")
        try:
            keys.caller(header)
        except Unauthorized as error:
            raise socketio.exceptions.ConnectionRefusedError(error.message) from None

    async def _disconnect(self, sid: str, *args: Any) -> None:
        task = self._runs.pop(sid, None)
        if task is not None:
            task.cancel()

    async def _run(self, sid: str, data: Any = None) -> None:
        if sid in self._runs:
            await self.sio.emit("error", {"message": "a run is already going on this connection; wait for its done"}, to=sid)
            return
        try:
            agent, request = parse_run(data)
        except RunRequestError as error:
            await self.sio.emit("error", {"message": str(error)}, to=sid)
            return
        router = self._router
        if router is None or not router.enabled:
            await self.sio.emit("error", {"message": "agents are off: the gateway has no router (ROUTER_ADDRESS)"}, to=sid)
            return
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
                await self.sio.emit("error", {"message": item.message}, to=sid)
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
                usage = {
                    "prompt_tokens": done.prompt_tokens,
                    "completion_tokens": done.completion_tokens,
                    "total_tokens": done.prompt_tokens + done.completion_tokens,
                }
                await self.sio.emit("done", {"finish_reason": done.finish_reason, "usage": usage}, to=sid)
                return
            else:
                await self.sio.emit("error", {"message": item.error.message}, to=sid)
                return

    async def close(self) -> None:
        tasks = list(self._runs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
