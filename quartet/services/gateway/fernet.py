"""Fernet-encrypted payloads: ``{"encrypted": "<token>"}`` in, the same envelope out.

The client seals its JSON request with the shared key (``ENCRYPTION_KEY``);
the gateway opens it, and seals everything it answers to that request: the
whole response, each streamed event, and errors found after opening. Fernet
(AES-128-CBC with HMAC-SHA256, https://github.com/fernet/spec) authenticates
the token, so a wrong key, a changed byte or (with a TTL) an old token all
fail the same way: 400 "decryption failed", before anything is generated.
The token and its plaintext are never logged.
"""

from __future__ import annotations

import json
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from starlette.requests import Request

from quartet.services.gateway.errors import BadRequest
from quartet.services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

#: The envelope's one key, in requests and answers alike.
ENVELOPE_KEY = "encrypted"


class DecryptionFailed(BadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="decryption_failed")


class Envelope:
    """Opens request tokens and seals answers with the configured key(s).

    Several comma-separated keys allow rotation: any of them opens a request,
    the first one seals the answers.
    """

    def __init__(self, keys: list[str], *, ttl_seconds: int | None = None) -> None:
        if not keys:
            raise ValueError("an Envelope needs at least one key")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError:
            # Fernet's own message would be fine, but the key must not reach a log through it.
            raise ValueError("ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64 bytes; see `quartet keygen`)") from None
        self._ttl = ttl_seconds

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Envelope | None:
        keys = settings.encryption_keys()
        return cls(keys, ttl_seconds=settings.encryption_ttl_seconds) if keys else None

    def open(self, token: str) -> bytes:
        """The plaintext of ``token``, or DecryptionFailed (the same for every cause, as Fernet reports)."""
        try:
            return self._fernet.decrypt(token.encode("ascii"), ttl=self._ttl)
        except (InvalidToken, UnicodeEncodeError, TypeError):
            log.info("decryption failed")
            raise DecryptionFailed(
                "decryption failed: the token is malformed, was changed, has expired, or was sealed with another key"
            ) from None

    def seal(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode("ascii")

    def seal_json(self, plaintext: bytes) -> bytes:
        """The envelope ``{"encrypted": token}`` of a JSON answer, as bytes."""
        return json.dumps({ENVELOPE_KEY: self.seal(plaintext)}).encode()


def envelope_token(raw: bytes) -> str | None:
    """The token when ``raw`` is an envelope (a JSON object whose only key is "encrypted"), else None.

    An object with other keys beside "encrypted" is a plain request with an
    unknown parameter, and is validated (and refused) as such.
    """
    if b'"' + ENVELOPE_KEY.encode() + b'"' not in raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if isinstance(body, dict) and list(body) == [ENVELOPE_KEY]:
        token = body[ENVELOPE_KEY]
        if not isinstance(token, str):
            raise DecryptionFailed("decryption failed: 'encrypted' must be a Fernet token string")
        return token
    return None


def answer_envelope(request: Request) -> Envelope | None:
    """The envelope to seal this request's answers with: set once its body was opened."""
    return getattr(request.state, "envelope", None)
