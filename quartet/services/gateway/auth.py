"""API keys (``Authorization: Bearer <key>``); ``limits.caller_of`` applies them on every entry.

Keys are kept only as SHA-256 digests and compared in constant time; neither a
key nor its digest is ever logged. Without configured keys every caller is
let in, and the rate limit (if any) applies per client address instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from quartet.services.gateway.errors import Unauthorized

log = logging.getLogger(__name__)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def caller(self, authorization: str | None) -> str:
        """Who is calling (a digest of the key), or Unauthorized."""
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        digest = _digest(key)
        # Compare against every key, so the time taken does not tell which one nearly matched.
        matches = [hmac.compare_digest(digest, known) for known in self._digests]
        if not any(matches):
            log.info("rejected an unknown API key")
            raise Unauthorized("incorrect API key provided; check the key you were given")
        return "key:" + digest.hex()[:16]
