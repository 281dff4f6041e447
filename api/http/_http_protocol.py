"""uvicorn's httptools protocol with a bound on the time a client may take to send a request's headers."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# set by `evoprune serve` from EVOPRUNE_HEADER_TIMEOUT_S before uvicorn creates any connection
HEADER_TIMEOUT_S = 10.0


class BoundedHeadersProtocol(HttpToolsProtocol):
    """Closes a connection whose request headers have not all arrived within HEADER_TIMEOUT_S.

    uvicorn times out idle connections only between requests: a connection that opens and sends nothing,
    or sends its headers a byte at a time, otherwise holds a socket (and a slot under --limit-concurrency)
    for ever.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_timer: asyncio.TimerHandle | None = None

    def _arm_headers_timer(self) -> None:
        self._disarm_headers_timer()
        self._headers_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)

    def _disarm_headers_timer(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_too_slow(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_headers_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_headers_timer()

    def on_headers_complete(self) -> None:
        self._disarm_headers_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_headers_timer()
        super().connection_lost(exc)
