"""The worker's outbox: a step's events reach each caller's queue in order, in one hand-over per loop."""

from __future__ import annotations

import asyncio
import threading

from quartet.services.engine.api.events import ErrorEvent
from quartet.services.engine.api.sinks import Outbox, QueueSink


async def test_a_steps_events_arrive_in_order_per_queue_from_another_thread() -> None:
    loop = asyncio.get_running_loop()
    first, second = asyncio.Queue(), asyncio.Queue()
    plain: list[str] = []
    handovers = 0
    original = loop.call_soon_threadsafe

    def counting(callback, *args):  # noqa: ANN001, ANN202 - counts wake-ups of this loop, then does it
        nonlocal handovers
        handovers += 1
        return original(callback, *args)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        outbox = Outbox()

        def worker() -> None:  # the engine's thread: events of two requests interleaved, plus a plain sink
            for i in range(5):
                outbox.put(QueueSink(loop, first), ErrorEvent("A", str(i)))
                outbox.put(QueueSink(loop, second), ErrorEvent("B", str(i)))
                outbox.put(lambda event: plain.append(event.message), ErrorEvent("C", str(i)))
            outbox.flush()

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        got_first = [(await asyncio.wait_for(first.get(), 5)).message for _ in range(5)]
        got_second = [(await asyncio.wait_for(second.get(), 5)).message for _ in range(5)]
    finally:
        del loop.call_soon_threadsafe
    assert got_first == got_second == plain == ["0", "1", "2", "3", "4"]
    assert handovers == 1  # ten events for this loop, one wake-up
    outbox.flush()  # empty: nothing more arrives
    await asyncio.sleep(0)
    assert first.empty() and second.empty()


def test_a_closed_loop_drops_its_events_without_failing_the_worker() -> None:
    loop = asyncio.new_event_loop()
    queue: asyncio.Queue = asyncio.Queue()
    loop.close()
    outbox = Outbox()
    outbox.put(QueueSink(loop, queue), ErrorEvent("X", "gone"))
    outbox.flush()  # the caller went away; its request is aborted by its own cleanup
    QueueSink(loop, queue)(ErrorEvent("X", "gone"))
    assert queue.empty()
