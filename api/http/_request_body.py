"""Request bodies read before the app: anonymous ones refused unread, the rest bounded in size and time."""

from __future__ import annotations

import hmac
import re

import anyio
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evoprune.api.http._input_text import MAX_DEPTH
from evoprune.api.http.deps import UNAUTHORIZED_DETAIL

# a JSON string, escapes included (possessive: linear time on any input)
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text `body` nests arrays and objects more than `limit` deep (strings ignored).

    Python's parser gives up near 1,000 levels with an error FastAPI can only answer 400 "error parsing
    the body"; measured first, the answer names the problem.
    """
    depth = 0
    for bracket in _BRACKETS.finditer(_JSON_STRING.sub(b"", body)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class RequestBodyGuard:
    """Reads a request's whole body before the app sees it, within `max_bytes` and `timeout_s`.

    uvicorn bounds the time to send headers (_http_protocol) but not the body: a client that sends one byte
    every few seconds holds a socket and a request thread for as long as it likes. Every route that takes a
    body is protected, so a body from a client without the token is refused before a byte of it is read.
    Refusals close the connection, so the unread rest of a body cannot be taken for a next request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, token: str | None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if (length is None or length == b"0") and not chunked:
            await self.app(scope, receive, send)
            return
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send, 413, self._too_large())
            return
        if self.token is not None and not self._authorised(headers.get(b"authorization", b"")):
            await self._refuse(send, 401, UNAUTHORIZED_DETAIL, {"WWW-Authenticate": "Bearer"})
            return
        body = await self._read(receive, send)
        if body is None:
            return
        content_type = headers.get(b"content-type", b"")
        # the body wraps the config one level deeper than the config's own bound
        if (not content_type or b"json" in content_type) and json_depth_exceeds(body, MAX_DEPTH + 1):
            detail = [
                {
                    "loc": ["body"],
                    "msg": f"the JSON body is nested more than {MAX_DEPTH} levels deep",
                    "type": "value_error.depth",
                }
            ]
            response = JSONResponse({"detail": detail}, status_code=422)
            await response(scope, _no_body, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _authorised(self, header: bytes) -> bool:
        scheme, _, credentials = header.partition(b" ")
        expected = (self.token or "").encode()
        # compare_digest takes as long whatever the first wrong character, so timing tells nothing
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), expected)

    async def _read(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 413/408 (or when the client left)."""
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self.timeout_s) as deadline:
            while True:
                incoming = await receive()
                if incoming["type"] != "http.request":
                    return None
                chunks.append(incoming.get("body", b""))
                size += len(chunks[-1])
                if size > self.max_bytes:
                    await self._refuse(send, 413, self._too_large())
                    return None
                if not incoming.get("more_body", False):
                    return b"".join(chunks)
        if deadline.cancelled_caught:
            detail = f"the request body did not arrive within {self.timeout_s:g} s (EVOPRUNE_BODY_TIMEOUT_S)"
            await self._refuse(send, 408, detail)
        return None

    def _too_large(self) -> str:
        return f"the request body is over {self.max_bytes} bytes (EVOPRUNE_MAX_BODY_BYTES)"

    async def _refuse(
        self, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        response = JSONResponse(
            {"detail": detail}, status_code=status, headers={**(headers or {}), "Connection": "close"}
        )
        await response({"type": "http"}, _no_body, send)
