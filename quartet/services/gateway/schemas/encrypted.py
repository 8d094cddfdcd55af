"""The Fernet envelope: a request body, a whole answer or one streamed event, sealed."""

from __future__ import annotations

from pydantic import Field

from quartet.services.gateway.schemas.strict import Strict


class EncryptedEnvelope(Strict):
    """Send ``{"encrypted": token}`` instead of the JSON body, where the token is the Fernet
    encryption (ENCRYPTION_KEY) of that body. The answer comes back the same way: the whole
    JSON answer sealed, or each streamed event as ``data: {"encrypted": token}``; only the
    final ``data: [DONE]`` stays in clear. A token that cannot be opened is a 400 "decryption failed"."""

    encrypted: str = Field(description="A Fernet token (url-safe base64) of the plaintext JSON.")
