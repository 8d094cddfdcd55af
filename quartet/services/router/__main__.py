"""``python -m quartet.services.router``: load and check the agents, connect to engine and memory, serve."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError

from quartet.services.common.errors import QuartetError
from quartet.services.common.grpc_server import serve
from quartet.services.common.logs import setup_logging
from quartet.services.router.config import ConfigError, load_agents
from quartet.services.router.core import RouterCore
from quartet.services.router.engine_client import EngineClient
from quartet.services.router.library import Library
from quartet.services.router.memory_client import MemoryClient
from quartet.services.router.server import create_server
from quartet.services.router.settings import RouterSettings

log = logging.getLogger("quartet.services.router")


async def main(settings: RouterSettings) -> None:
    agents = load_agents(settings.agents_file, Library(settings.prompts_dir, settings.schemas_dir, settings.grammars_dir))
    log.info("loaded agents", extra={"agents": [a.name for a in agents], "agents_file": str(settings.agents_file)})
    # Channels connect lazily: the router starts even if the engine or memory is still loading.
    core = RouterCore(
        agents,
        EngineClient(
            settings.engine_address,
            rpc_timeout_seconds=settings.rpc_timeout_seconds,
            generate_timeout_seconds=settings.engine_timeout_seconds,
        ),
        MemoryClient(settings.memory_address, rpc_timeout_seconds=settings.rpc_timeout_seconds),
        max_input_chars=settings.max_input_chars,
    )
    try:
        built = create_server(settings.listen, core)
    except BaseException:
        await core.close()
        raise
    await serve(built, name="router", grace=settings.shutdown_grace_seconds, on_stop=core.close)


def run() -> int:
    try:
        settings = RouterSettings()
    except ValidationError as error:
        setup_logging("router")
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        log.error("invalid router settings", extra={"error": problems})
        print(f"router: invalid settings: {problems}", file=sys.stderr)
        return 2
    setup_logging("router", settings.log_level)
    try:
        asyncio.run(main(settings))
    except (ConfigError, QuartetError, OSError) as error:
        log.error("router failed to start", extra={"error": str(error)})
        print(f"router: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
