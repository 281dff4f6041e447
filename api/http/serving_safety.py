"""What every way of starting the HTTP API applies: the open-bind refusal, loopback Host names, limits."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

# imported by `evoprune serve` and by the app factory alike; the server itself is imported where used
if TYPE_CHECKING:
    import uvicorn

    from evoprune.api.settings import Settings

EXIT_BAD_INPUT = 2
LOOPBACK_HOST_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    """Whether `host` (an interface to listen on) is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def open_problem(host: str, token: str | None, allow_open: bool) -> str | None:
    """Why the server must not start open on `host`, or None when it may.

    Args:
        host: the interface to listen on.
        token: the API token, if any.
        allow_open: EVOPRUNE_ALLOW_OPEN / --allow-open.

    Returns:
        A message naming the ways out, or None.

    """
    if token or allow_open or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host} without EVOPRUNE_API_TOKEN: anyone who reaches it could run "
        "experiments. "
        "Set a token (`openssl rand -hex 32`), listen on 127.0.0.1, or say it is meant to be open with "
        "--allow-open (EVOPRUNE_ALLOW_OPEN=true)"
    )


def settings_or_exit() -> Settings:
    """The service's settings from the environment; on a bad one, each problem printed and exit status 2.

    Returns:
        The settings.

    Raises:
        SystemExit: with EXIT_BAD_INPUT when a setting is invalid (e.g. a placeholder token).

    """
    from pydantic import ValidationError

    from evoprune.api.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "settings"
            message = item["msg"].removeprefix("Value error, ")
            print(f"evoprune: error: {field}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def serving_settings(host: str, settings: Settings, allow_open: bool = False) -> Settings:
    """The settings to serve the API on `host` with, or a refusal to serve it there.

    `evoprune serve` and `uvicorn --factory evoprune.api.http.app:app_from_environment` both come through here
    and through `bound_server`: no open API off loopback, loopback Host names only on loopback.

    Args:
        host: the interface the server listens on.
        settings: the service's settings.
        allow_open: --allow-open.

    Returns:
        The settings, with the trusted hosts filled in on loopback.

    Raises:
        SystemExit: with EXIT_BAD_INPUT when the server would be open to anyone who reaches it.

    """
    problem = open_problem(host, settings.token, settings.allow_open or allow_open)
    if problem is not None:
        print(f"evoprune: error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    if not settings.trusted_host_list and is_loopback(host):
        # a page on loopback is still reachable through a DNS name rebound to 127.0.0.1: answer only to
        # the loopback names unless told otherwise
        settings = settings.model_copy(update={"trusted_hosts": ",".join(LOOPBACK_HOST_NAMES)})
    return settings


def bound_server(config: uvicorn.Config, settings: Settings) -> None:
    """Give a uvicorn server, before it binds, the header timeout, connection cap and keep-alive timeout.

    Args:
        config: the server's config (its protocol class and limits are set here).
        settings: the service's settings.

    """
    from evoprune.api.http import _http_protocol

    _http_protocol.HEADER_TIMEOUT_S = settings.header_timeout_s
    # both: uvicorn resolves `http` into `http_protocol_class` when it loads, which may already have begun
    config.http = _http_protocol.BoundedHeadersProtocol
    config.http_protocol_class = _http_protocol.BoundedHeadersProtocol
    config.timeout_keep_alive = int(max(1, settings.keep_alive_s))
    config.limit_concurrency = min(
        config.limit_concurrency or settings.max_connections, settings.max_connections
    )
