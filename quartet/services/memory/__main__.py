"""``python -m quartet.services.memory``: open the store, serve until SIGTERM, close the store."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError

from quartet.services.common.errors import QuartetError
from quartet.services.common.grpc_server import serve
from quartet.services.common.logs import setup_logging
from quartet.services.memory.backends import open_store
from quartet.services.memory.core import MemoryCore
from quartet.services.memory.embedder import load_embedder
from quartet.services.memory.limits import Limits
from quartet.services.memory.server import create_server
from quartet.services.memory.settings import MemorySettings

log = logging.getLogger("quartet.services.memory")


async def main(settings: MemorySettings) -> None:
    limits = Limits(
        default_k=settings.default_k,
        max_k=settings.max_k,
        max_content_bytes=settings.max_content_bytes,
        max_turns_per_append=settings.max_turns_per_append,
    )
    # Loading the embedder first: a missing required model fails before any database work.
    embedder = await asyncio.to_thread(load_embedder, settings.embeddings, settings.embeddings_model_dir)
    store = await open_store(settings.database_url, settings.resolved_db_path)
    core = MemoryCore(store, limits, embedder)
    try:
        built = create_server(settings.listen, core)
    except BaseException:
        await core.close()
        raise
    await serve(built, name="memory", grace=settings.shutdown_grace_seconds, on_stop=core.close)


def run() -> int:
    try:
        settings = MemorySettings()
    except ValidationError as error:
        setup_logging("memory")
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        log.error("invalid memory settings", extra={"error": problems})
        print(f"memory: invalid settings: {problems}", file=sys.stderr)
        return 2
    setup_logging("memory", settings.log_level)
    try:
        asyncio.run(main(settings))
    except (QuartetError, OSError, ValueError) as error:
        # A configuration problem at startup: say what it is and exit non-zero, no traceback.
        log.error("memory service failed to start", extra={"error": str(error)})
        print(f"memory: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
