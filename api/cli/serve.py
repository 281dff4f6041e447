"""The `evoprune serve` sub-command: the HTTP API and web page under uvicorn."""

from __future__ import annotations

import argparse
from typing import Any

from evoprune.api.cli.commands import COMMANDS
from evoprune.api.http.serving_safety import bound_server, serving_settings, settings_or_exit


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

    from evoprune.api.http.app import create_app

    try:
        settings = serving_settings(args.host, settings_or_exit(), allow_open=args.allow_open)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    config = uvicorn.Config(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    bound_server(config, settings)
    uvicorn.Server(config).run()
    return 0
