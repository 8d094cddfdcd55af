"""Several engine streams read as one: a Completions request with several prompts.

Each prompt is its own ``Generate`` call; ``merge`` interleaves their events in
arrival order, tagged with the prompt's position, and cancels every call as
soon as one fails or the reader stops reading (a client that went away).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from quartet.engine.v1 import engine_pb2

from quartet.services.common.engine_client import GenerateStream

_END = object()


async def peek_all(streams: list[GenerateStream]) -> None:
    """Wait for each stream's first event, so a refusal of any prompt is an HTTP error; cancel all on failure."""
    try:
        await asyncio.gather(*(stream.peek() for stream in streams))
    except BaseException:
        for stream in streams:
            stream.cancel()
        raise


async def merge(streams: list[GenerateStream]) -> AsyncIterator[tuple[int, engine_pb2.GenerateResponse]]:
    """``(stream position, event)`` pairs from all streams, until every stream ends."""
    if len(streams) == 1:
        async for event in streams[0].events():
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue()

    async def pump(position: int, stream: GenerateStream) -> None:
        try:
            async for event in stream.events():
                queue.put_nowait((position, event))
        except Exception as error:  # noqa: BLE001 - handed to the reader, which raises it
            queue.put_nowait((position, error))
        finally:
            queue.put_nowait((position, _END))

    tasks = [asyncio.ensure_future(pump(position, stream)) for position, stream in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            position, item = await queue.get()
            if item is _END:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield position, item  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
