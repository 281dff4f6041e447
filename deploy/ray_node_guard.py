"""Runs a command (the API server) for as long as this container's Ray node lives; exits when either ends.

The API joins the cluster through a Ray node of its own (`ray start --address=...` in its container). When
that node's raylet dies, or the head restarts and forgets it, the server can no longer start anything:
every submission would answer 503 until a person restarted the container. Docker restarts a container whose
command exits (`restart: unless-stopped`), Kubernetes one whose process ends, but neither restarts a merely
unhealthy one (Docker never does, outside Swarm). So this guard turns "the node is gone" into "the command
exited": it polls the raylet through the node's dashboard agent (the probe KubeRay uses,
/api/local_raylet_healthz), and after a few failures in a row stops the server and exits non-zero. The
restarted container runs `ray start` again, which waits for, and then joins, the head.

    python3 deploy/ray_node_guard.py --raylet-url http://127.0.0.1:52365/api/local_raylet_healthz \
        -- evoprune serve --host 0.0.0.0 --port 8000
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

# the sibling module; this file runs as a script from deploy/ (no package), as the health checks do
sys.path.insert(0, str(Path(__file__).resolve().parent))
from healthcheck import check_http

POLL_S = 5.0
# consecutive failed checks before the node counts as gone: one slow answer on a busy node is not a death
FAILURES = 3
# how long the server may take to stop after SIGTERM (compose's stop_grace_period is 30 s)
STOP_GRACE_S = 20.0
# the exit status when the node is gone (the server's own status is passed on when it exits by itself)
NODE_GONE_STATUS = 3


def stop(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process, and SIGKILL it if it has not ended within `grace_s`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def guard(command: Sequence[str], raylet_url: str, poll_s: float = POLL_S, failures: int = FAILURES) -> int:
    """Run `command` until it exits or the raylet behind `raylet_url` fails `failures` checks in a row.

    Args:
        command: the program to run and its arguments.
        raylet_url: the node's raylet health URL (2xx while the raylet is alive and registered).
        poll_s: the pause between checks.
        failures: consecutive failed checks that end the command.

    Returns:
        The command's exit status when it ended by itself, NODE_GONE_STATUS when the node went away.

    """
    process = subprocess.Popen(list(command))

    def forward(signum: int, frame: FrameType | None) -> None:
        # docker stop / kubectl delete: the server gets the signal and its grace period, the guard follows it
        stop(process)
        sys.exit(process.returncode if process.returncode is not None else 1)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    while True:
        try:
            status = process.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            pass
        else:
            print(f"ray_node_guard: {command[0]} exited with status {status}", file=sys.stderr, flush=True)
            return status
        problem = check_http(raylet_url)
        failed = failed + 1 if problem is not None else 0
        if failed >= failures:
            print(
                f"ray_node_guard: this container's Ray node is gone ({problem}, {failed} checks in a row); "
                f"stopping {command[0]} so that the container restarts and joins the cluster again",
                file=sys.stderr,
                flush=True,
            )
            stop(process)
            return NODE_GONE_STATUS


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `[options] -- COMMAND...` and guard the command.

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status.

    """
    parser = argparse.ArgumentParser(prog="ray_node_guard", description=__doc__.splitlines()[0])
    parser.add_argument("--raylet-url", required=True, help="the node's /api/local_raylet_healthz URL")
    parser.add_argument("--poll-s", type=float, default=POLL_S, help="seconds between checks")
    parser.add_argument("--failures", type=int, default=FAILURES, help="failed checks in a row that count")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    return guard(command, args.raylet_url, args.poll_s, args.failures)


if __name__ == "__main__":
    sys.exit(main())
