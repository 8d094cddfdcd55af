"""Stop work whose client has gone away.

Starlette cancels a streaming body when the client disconnects, but not a
handler that is still computing its answer. ``until_disconnect`` gives the
handler the same behaviour: it watches the connection while the work runs
and cancels the work (and so the engine call) when the client leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

from fastapi import Request

from quartet.services.common.errors import QuartetError

T = TypeVar("T")


class ClientDisconnected(QuartetError):
    """The client closed the connection before the answer was ready; nobody reads this response."""

    http_status = 499
    code = "client_closed_request"


async def _disconnected(request: Request) -> None:
    # Called after the body was read: the next ASGI message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    raise ClientDisconnected("the client disconnected before the answer was ready")
