"""The `evoprune serve` sub-command: the HTTP API and web page under uvicorn."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from evoprune.api.cli_commands import COMMANDS

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


def register(subparsers: Any) -> None:
    """Add `serve` to the `evoprune` parser.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    parser = subparsers.add_parser(
        "serve",
        help=COMMANDS["serve"].help,
        description="Serves the evoprune API (OpenAPI at /docs) and web page. Settings come from the "
        "environment: EVOPRUNE_API_TOKEN, EVOPRUNE_DATA_DIR, REDIS_URL, RAY_ADDRESS, ...",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--allow-open",
        action="store_true",
        help="serve on a non-loopback address without EVOPRUNE_API_TOKEN (EVOPRUNE_ALLOW_OPEN=true)",
    )
    parser.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """`evoprune serve`.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status (2 when the settings are invalid, e.g. a placeholder token).

    """
    import uvicorn
    from pydantic import ValidationError

    from evoprune.api.app import create_app
    from evoprune.api.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "settings"
            message = item["msg"].removeprefix("Value error, ")
            print(f"evoprune: error: {field}: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    problem = open_problem(args.host, settings.token, settings.allow_open or args.allow_open)
    if problem is not None:
        print(f"evoprune: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not settings.trusted_host_list and is_loopback(args.host):
        # a page on loopback is still reachable through a DNS name rebound to 127.0.0.1: answer only to
        # the loopback names unless told otherwise
        settings = settings.model_copy(update={"trusted_hosts": ",".join(LOOPBACK_HOST_NAMES)})
    from evoprune.api import http_protocol

    http_protocol.HEADER_TIMEOUT_S = settings.header_timeout_s
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        http=http_protocol.BoundedHeadersProtocol,
        timeout_keep_alive=int(max(1, settings.keep_alive_s)),
        limit_concurrency=settings.max_connections,
    )
    return 0
