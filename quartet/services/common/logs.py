"""Structured JSON logs on stderr, one object per line.

Fields go in ``extra=``; never put prompts, keys or payloads there unless
``debug_payloads()`` is true (LOG_PAYLOADS=1 with LOG_LEVEL=DEBUG).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(service: str, level: str | None = None) -> None:
    """Route every logger to one JSON handler on stderr; idempotent."""
    level = (level or os.environ.get("LOG_LEVEL", "INFO")).upper()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_quartet", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler._quartet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.Formatter.converter = time.gmtime


def debug_payloads() -> bool:
    """Whether prompts and payloads may be logged (both LOG_LEVEL=DEBUG and LOG_PAYLOADS=1)."""
    return os.environ.get("LOG_LEVEL", "").upper() == "DEBUG" and os.environ.get("LOG_PAYLOADS") == "1"
