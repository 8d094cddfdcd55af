"""The chat playground: a static page (plain HTML and JS, no build step) at ``/playground``.

Models stream through ``POST /v1/chat/completions`` (fetch + SSE), agents through
Socket.IO (``quartet/services/gateway/agent_socket.py``), with the Socket.IO client served
from ``/static/socket.io.min.js`` (vendored from npm's socket.io-client 4.8.4), so
the page needs nothing from outside. Not behind the API key: the page itself holds
no data, and asks for a key when the API needs one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(tags=["playground"], include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/playground")


@router.get("/playground")
async def playground() -> FileResponse:
    return FileResponse(STATIC_DIR / "playground.html", media_type="text/html")
