"""Container health checks for evoprune's services: the API answers GET /health, a Ray node is alive."""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

HTTP_TIMEOUT_S = 5.0
RAY_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 3.0
DEFAULT_API_URL = "http://127.0.0.1:8000/health"


def check_http(url: str, timeout_s: float = HTTP_TIMEOUT_S) -> str | None:
    """Ask `url` and accept any 2xx answer.

    Args:
        url: the health endpoint.
        timeout_s: how long to wait for the answer.

    Returns:
        None when healthy, else a message saying what failed.

    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:  # 503: the API runs but its store (Redis) is unreachable
        return f"{url} answered {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"{url} did not answer: {error}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


def check_ray(
    address: str, node_manager_port: int | None = None, timeout_s: float = RAY_TIMEOUT_S
) -> str | None:
    """Ask the cluster's GCS which nodes are alive.

    Args:
        address: the GCS address, host:port.
        node_manager_port: None checks that the head node is alive; a port checks that this machine's own
            node (its raylet on that port) has joined and is alive, which is what a worker's health means.
        timeout_s: how long the GCS may take to answer.

    Returns:
        None when healthy, else a message saying what failed.

    """
    host, _, port = address.rpartition(":")
    try:  # a quick refusal instead of the GCS client's long connection retries
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as error:
        return f"the Ray GCS at {address} does not answer: {error}"
    # imported here so that the API's HTTP check does not pay for Ray; GcsClient is what `ray health-check`
    # itself talks to the GCS with (compiled modules: no type information)
    import ray.util
    from ray._raylet import GcsClient  # type: ignore[attr-defined]
    from ray.core.generated.gcs_pb2 import GcsNodeInfo  # type: ignore[attr-defined]

    try:
        nodes = GcsClient(address=address).get_all_node_info(timeout=timeout_s).values()
    except Exception as error:  # the client raises its own RPC errors
        return f"the Ray GCS at {address} did not list its nodes: {error}"
    alive = [node for node in nodes if node.state == GcsNodeInfo.ALIVE]
    if node_manager_port is None:
        return None if any(node.is_head_node for node in alive) else f"no live head node at {address}"
    here = ray.util.get_node_ip_address()
    if any(
        node.node_manager_address == here and node.node_manager_port == node_manager_port for node in alive
    ):
        return None
    return f"this machine's Ray node ({here}:{node_manager_port}) has not joined the cluster at {address}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; exit status 0 = healthy, 1 = unhealthy (Docker's HEALTHCHECK convention).

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status.

    """
    parser = argparse.ArgumentParser(prog="healthcheck", description=__doc__)
    checks = parser.add_subparsers(dest="check", metavar="CHECK")
    http = checks.add_parser("http", help="GET a URL and expect 2xx (the API's /health)")
    http.add_argument("url", nargs="?", default=DEFAULT_API_URL)
    ray_check = checks.add_parser(
        "ray", help="the Ray head is alive (or, with --node-manager-port, this node)"
    )
    ray_check.add_argument("address", help="host:port of the Ray head's GCS")
    ray_check.add_argument(
        "--node-manager-port", type=int, help="the port this machine's `ray start` gave its raylet"
    )
    args = parser.parse_args(argv)
    if args.check == "ray":
        problem = check_ray(args.address, args.node_manager_port)
    else:
        problem = check_http(getattr(args, "url", DEFAULT_API_URL))
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
