"""Where a request's events go: the caller's asyncio queue, reached from the engine's worker thread.

Waking an event loop from another thread costs a write to its self-pipe (a system call) and a
wake-up of that loop. Per token, at 256 concurrent streams, that was the largest item of the
worker's host time (a profile: 1.1 of 6.3 s in ``socket.send``). So the worker collects a
step's events in an ``Outbox`` and hands each loop all of its events in one call; each
request's events keep their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from quartet.services.engine.api.events import Event


class QueueSink:
    """Puts events into ``queue``, which lives on ``loop``; callable from any thread."""

    __slots__ = ("loop", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Event]) -> None:
        self.loop = loop
        self.queue = queue

    def __call__(self, event: Event) -> None:
        _call_soon(self.loop, self.queue.put_nowait, event)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the caller's loop is closed; its request is aborted by the caller's cleanup
        pass


def _put_all(items: list[tuple[asyncio.Queue[Event], Event]]) -> None:
    for queue, event in items:
        queue.put_nowait(event)


class Outbox:
    """Events of one step, delivered together by ``flush`` (one wake-up per event loop)."""

    def __init__(self) -> None:
        self._items: list[tuple[Callable[[Event], None], Event]] = []

    def put(self, sink: Callable[[Event], None], event: Event) -> None:
        self._items.append((sink, event))

    def flush(self) -> None:
        if not self._items:
            return
        items, self._items = self._items, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Event], Event]]] = {}
        for sink, event in items:
            if isinstance(sink, QueueSink):
                by_loop.setdefault(sink.loop, []).append((sink.queue, event))
            else:  # any other callable (tests' sinks): called in order, on this thread
                sink(event)
        for loop, batch in by_loop.items():
            _call_soon(loop, _put_all, batch)
