"""The `evoprune submit` sub-command: post an experiment to a server and optionally follow it to the end."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from evoprune.api.cli.commands import COMMANDS
from evoprune.api.client import ApiError, Client, format_detail

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    """Add `submit` to the `evoprune` parser.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    parser = subparsers.add_parser(
        "submit",
        help=COMMANDS["submit"].help,
        description="Posts an experiment config to an evoprune server; with --follow, prints its progress "
        "until it ends and exits 0 only if it succeeded.",
    )
    parser.add_argument("config", metavar="CONFIG", help="experiment YAML")
    parser.add_argument(
        "--url",
        default=os.environ.get("EVOPRUNE_URL", DEFAULT_URL),
        help=f"the server (default {DEFAULT_URL})",
    )
    parser.add_argument("--token", help="API token (default: EVOPRUNE_API_TOKEN)")
    parser.add_argument("--name", help="display name (default: the config's name)")
    parser.add_argument("--follow", action="store_true", help="print progress until the experiment ends")
    parser.set_defaults(handler=submit_command)


def submit_command(args: argparse.Namespace) -> int:
    """`evoprune submit`.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status: 0 submitted (with --follow: succeeded), 1 failed or cancelled, 2 bad input.

    """
    try:
        text = Path(args.config).read_text(encoding="utf-8")
    except OSError as error:
        print(f"evoprune: error: cannot read {args.config}: {error.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    client = Client(args.url, token=args.token or os.environ.get("EVOPRUNE_API_TOKEN"))
    try:
        experiment_id = client.submit(config_yaml=text, name=args.name)
    except ApiError as error:
        print(f"evoprune: error: the server refused the experiment ({error.status}):", file=sys.stderr)
        print(format_detail(error.detail), file=sys.stderr)
        return EXIT_BAD_INPUT if 400 <= error.status < 500 else EXIT_FAILED
    except OSError as error:
        print(f"evoprune: error: cannot reach {args.url}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(experiment_id)
    if not args.follow:
        return 0
    return follow(client, experiment_id)


def follow(client: Client, experiment_id: str) -> int:
    """Print an experiment's progress from its event stream until it ends.

    Args:
        client: connected to the server.
        experiment_id: the experiment.

    Returns:
        0 when it succeeded, 1 otherwise.

    """
    try:
        for event in client.events(experiment_id):
            line = _describe(event.event, event.data)
            if line:
                print(line, file=sys.stderr, flush=True)
            if event.event == "done":
                return 0 if event.data.get("status") == "succeeded" else EXIT_FAILED
    except (ApiError, OSError) as error:
        print(f"evoprune: error: lost the event stream of {experiment_id}: {error}", file=sys.stderr)
    return EXIT_FAILED


def _describe(kind: str, data: Any) -> str:
    if kind == "snapshot":
        experiment = data["experiment"]
        return (
            f"{experiment['id']}: {experiment['status']}, {experiment['evaluations_done']}/"
            f"{experiment['evaluations_total']} evaluations, hypervolume {experiment['hypervolume']:.4f}"
        )
    if kind == "status":
        return f"status: {data['status']}"
    if kind == "evaluation":
        progress = f"[{data['evaluations_done']}/{data['evaluations_total']}]"
        return (
            f"{progress} run {data['run']} step {data['step']}: accuracy {data['accuracy']:.4f}, "
            f"active {data['active_fraction']:.3f}, auroc {data['auroc']:.4f}"
            + (" (cached)" if data["cached"] else "")
            + (
                f" (screened out at {data['fidelity']:.0%} of the epochs)"
                if data.get("fidelity", 1.0) < 1
                else ""
            )
        )
    if kind == "front" and data["run"] == -1:
        return f"front: {len(data['points'])} points, hypervolume {data['hypervolume']:.4f}"
    if kind == "run-finished":
        return f"run {data['run']} finished: hypervolume {data['hypervolume']:.4f}"
    if kind == "done":
        error = f": {data['error']}" if data.get("error") else ""
        return (
            f"{data['status']}{error} — {data['evaluations']} evaluations, hypervolume "
            f"{data['hypervolume']:.4f}, results in {data['results_dir']}"
        )
    return ""
