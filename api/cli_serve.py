"""The `evoprune serve` sub-command: the HTTP API and web page under uvicorn."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    """Add `serve` to the `evoprune` parser.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API and web page",
        description="Serves the evoprune API (OpenAPI at /docs) and web page. Settings come from the "
        "environment: EVOPRUNE_API_TOKEN, EVOPRUNE_DATA_DIR, REDIS_URL, RAY_ADDRESS, ...",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """`evoprune serve`.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status (2 when the settings are invalid, e.g. a placeholder token).

    """
    import uvicorn

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
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0
