"""``python -m quartet.services.gateway``: serve the OpenAI API with uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import logging

import uvicorn

from quartet.services.common.logs import setup_logging
from quartet.services.gateway.app import create_app
from quartet.services.gateway.settings import GatewaySettings

log = logging.getLogger("quartet.services.gateway")


def main() -> None:
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    log.info(
        "starting",
        extra={
            "host": settings.host,
            "port": settings.port,
            "engine_address": settings.engine_address,
            "router_address": settings.router_address,
            "memory_address": settings.memory_address,
            # Whether each policy is on; never the keys themselves.
            "api_keys": bool(settings.api_keys or settings.api_keys_file),
            "encryption": settings.encryption_key is not None,
            "rate_limit_per_minute": settings.rate_limit_per_minute,
            "cors_origins": settings.cors_origins,
            "max_tokens_cap": settings.max_tokens_cap,
        },
    )
    # log_config=None keeps uvicorn's loggers on our JSON handler; uvicorn drains on SIGTERM.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


if __name__ == "__main__":
    main()
