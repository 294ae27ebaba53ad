"""Who is calling: the source system's API key, checked before anything of the request body is read.

A pure ASGI middleware (:class:`SourceAuthentication`) so an unauthenticated caller gets 401 without the
service parsing, validating or even reading its body (nor learning from a 422 what a valid record looks like).
The key travels as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; ``cld_governance.tenancy`` decides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final

from cld_governance.tenancy import Registry, Source, authenticate_source, authorise_source
from cld_ingest.limits import ASGIApp, Receive, Scope, Send

STATE_SOURCE: Final = "cld_source"
"""Key of the authenticated :class:`Source` in the request's ``scope["state"]`` (``request.state``)."""
_BEARER: Final = re.compile(r"^bearer[ \t]+(\S+)[ \t]*$", re.IGNORECASE)
NO_KEY_DETAIL: Final = "no API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key in the request headers: a Bearer token first, else ``X-API-Key``; None when neither.

    ``Authorization`` with another scheme (Basic, ...) presents no key. Bytes are read as Latin-1, as HTTP
    allows; a key that is not ASCII simply matches no stored hash.
    """
    bearer: str | None = None
    api_key: str | None = None
    for name, value in headers:
        if name == b"authorization" and bearer is None:
            m = _BEARER.match(value.decode("latin-1"))
            bearer = m[1] if m else None
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1").strip() or None
    return bearer or api_key


class SourceAuthentication:
    """Refuses requests under ``prefix`` whose key belongs to no source (401); stores the source otherwise."""

    def __init__(self, app: ASGIApp, *, registry: Registry, prefix: str = "/v1/") -> None:
        self.app = app
        self.registry = registry
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope.get("headers", ()))
        source = authenticate_source(self.registry, key)
        if source is None:
            detail = NO_KEY_DETAIL if key is None else authorise_source(None, "000").detail
            await _send_401(send, detail)
            return
        scope.setdefault("state", {})[STATE_SOURCE] = source
        await self.app(scope, receive, send)


def source_of(state: object) -> Source:
    """The source the middleware authenticated (``request.state``)."""
    source = getattr(state, STATE_SOURCE, None)
    if not isinstance(source, Source):  # only if a route is mounted outside the middleware's prefix
        raise RuntimeError("request reached a source route without authentication")
    return source


async def _send_401(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="cld-ingest"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
