"""Pure ASGI middlewares: request bodies over a size limit -> 413 (counted as they stream in); a JSON path
without a JSON Content-Type -> 415 (before the body is read)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


class _TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it through as a 413 instead of a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodySizeLimit:
    """``limit_for(path)`` gives the byte limit of a path. Content-Length is checked first, then the stream."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_413(send, limit)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_413(send, limit)


async def _send_413(send: Send, limit: int) -> None:
    await _send_json(send, 413, f"the request body is larger than {limit} bytes")


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type (``application/merge-patch+json``), any parameters."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonContentType:
    """Refuses a request to a JSON path whose Content-Type is not JSON with 415 before its body is read.

    Without it FastAPI reads such a body anyway and answers 422, which tells the caller the record is wrong
    when it is the request (docs/contract.md documents 415). A missing Content-Type is refused too.
    """

    def __init__(self, app: ASGIApp, *, json_paths: frozenset[str]) -> None:
        self.app = app
        self.json_paths = json_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope["path"] not in self.json_paths:
            await self.app(scope, receive, send)
            return
        content_types = [v for k, v in scope.get("headers", ()) if k == b"content-type"]
        if len(content_types) == 1 and is_json_media_type(content_types[0].decode("latin-1")):
            await self.app(scope, receive, send)
            return
        await _send_json(send, 415, "send the body as JSON with Content-Type: application/json")


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
