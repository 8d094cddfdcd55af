"""``python -m quartet.services.engine``: load the model and serve EngineService until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError

from quartet.services.common.errors import QuartetError
from quartet.services.common.grpc_server import serve
from quartet.services.common.logs import setup_logging
from quartet.services.engine.backends import create_engine
from quartet.services.engine.api.server import create_server
from quartet.services.engine.settings import EngineSettings

log = logging.getLogger("quartet.services.engine")


async def main() -> None:
    settings = EngineSettings()
    setup_logging("engine", settings.log_level)
    core = await create_engine(settings)  # EngineCore (native, transformers) or VllmEngine
    built = create_server(settings.listen, core)
    await serve(built, name="engine", grace=settings.shutdown_grace_seconds, on_stop=core.close)


if __name__ == "__main__":
    setup_logging("engine")
    try:
        asyncio.run(main())
    except ValidationError as error:
        log.error("invalid engine settings", extra={"errors": [e["msg"] for e in error.errors()]})
        sys.exit(2)
    except QuartetError as error:
        log.error("engine cannot start", extra={"error": error.message})
        sys.exit(2)
