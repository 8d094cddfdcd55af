"""Test utilities shared by every test folder."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class ThreadLoop:
    """An asyncio event loop running in a background thread.

    Hosts servers (gRPC, uvicorn) that tests reach over real sockets, so that
    sync tests (the sync ``openai`` client, ``requests``) and async tests on
    pytest's own loop can both call them without deadlocking either loop.

        loop = ThreadLoop("engine")
        server = loop.run(start_server())   # runs on the background loop, returns its result
        ...
        loop.run(server.stop(None))
        loop.stop()
    """

    def __init__(self, name: str = "test-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 120.0) -> T:
        """Run ``coro`` on the background loop and wait (from any thread) for its result."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("ThreadLoop.run called from its own thread would deadlock; await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def run_async(self, coro: Awaitable[T]) -> T:
        """Await ``coro`` on the background loop from another event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self.loop))

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel what still runs on the loop, stop it and join the thread. Idempotent."""
        if not self._thread.is_alive():
            return

        async def _cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_cancel_rest(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        self.loop.close()

    def __enter__(self) -> ThreadLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
