"""What the server checks on every state-changing request before a route runs (an ASGI middleware):

1. same origin: ``Sec-Fetch-Site`` (sent by current browsers) must be ``same-origin``; without it an
   ``Origin`` header must name this server; a request with neither is not from a browser and cannot
   carry another site's intent (forms and fetches from a page always send one). Otherwise 403.
2. the token, before a byte of the body is read: 401 (routes other than /login and /logout).
3. the body's size: a ``Content-Length`` over the route's cap is refused at once, a body without one
   is counted as it arrives; 413 either way.
A catalog that does not answer gives 503 with ``Retry-After`` here as in the routes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from anyio import to_thread
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.datastructures import Headers
from starlette.requests import Request

from annotation_ui.context import COOKIE, ReviewContext
from dvmset import review

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/login", "/logout"})  # no token yet (login), or none needed (logout)
#: body caps in bytes: a decision holds a note of at most 2000 characters (8 KB in UTF-8, more as JSON
#: escapes), everything else is an id or a token
BODY_CAPS = {"/api/decisions": 32 * 1024}
DEFAULT_BODY_CAP = 4 * 1024
RETRY_AFTER_S = 5
#: the database's errors that mean "not answering now" (refused, cut, locked past the busy timeout);
#: an IntegrityError or a programming error is a bug, not an outage, and stays a 500
CATALOG_DOWN = (OperationalError, InterfaceError)


def body_cap(path: str) -> int:
    return BODY_CAPS.get(path, DEFAULT_BODY_CAP)


def own_origin(scope: Scope, headers: Headers) -> str:
    """This server's origin as the browser sees it (scheme after a trusted proxy's X-Forwarded-Proto)."""
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()


def cross_origin_reason(scope: Scope, headers: Headers) -> str | None:
    """Why this request must be refused as cross-origin, or None."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return None if site.lower() in ("same-origin", "none") else f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None:
        return None  # not a browser: curl, a script with a bearer token
    return None if origin.lower() == own_origin(scope, headers) else f"Origin: {origin}"


async def _reply(send: Send, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _token(headers: Headers) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return Request({"type": "http", "headers": [(b"cookie", headers.get("cookie", "").encode())]}).cookies.get(COOKIE)


class RequestGuard:
    """Origin, token and body-size checks for every request that is not GET/HEAD/OPTIONS (see module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        why = cross_origin_reason(scope, headers)
        if why is not None:
            await _reply(send, 403, {"detail": f"cross-origin request refused ({why})"})
            return
        path = scope["path"]
        if path not in OPEN_PATHS:
            ctx: ReviewContext = scope["app"].state.review
            token = _token(headers)
            try:
                ann = await to_thread.run_sync(self._lookup, ctx, token)
            except CATALOG_DOWN:
                await _reply(send, 503, {"detail": "the catalog is not answering; try again shortly"},
                             {"Retry-After": str(RETRY_AFTER_S)})
                return
            if ann is None:
                await _reply(send, 401, {"detail": "sign in with your personal login link" if not token
                                         else "unknown token: ask for a new login link"},
                             {"WWW-Authenticate": "Bearer"})
                return
            scope.setdefault("state", {})["annotator"] = ann
        cap = body_cap(path)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await _reply(send, 413, {"detail": f"request body over {cap} bytes"})
            return
        await self._capped(scope, receive, send, cap)

    @staticmethod
    def _lookup(ctx: ReviewContext, token: str | None):  # noqa: ANN205 - an Annotator or None
        if not token:
            return None
        with ctx.catalog.session() as s:
            return review.annotator_for_token(s, token)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        """Run the app with a receive that counts body bytes: past ``cap`` it answers 413 itself, tells
        the app the client left, and drops whatever the app answers after that."""
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > cap:
                    refused = True
                    await _reply(send, 413, {"detail": f"request body over {cap} bytes"})
                    return {"type": "http.disconnect"}
            return msg

        async def tracked(msg: Message) -> None:
            if not refused:
                await send(msg)

        await self.app(scope, counted, tracked)
