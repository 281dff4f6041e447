"""Container health checks for evoprune's services, one per role, each an HTTP GET of a public endpoint."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

HTTP_TIMEOUT_S = 5.0
ROLE_VARIABLE = "EVOPRUNE_ROLE"
# What each role's health means, as the URL that answers 2xx when it holds. The two Ray URLs are the ones
# Ray's dashboard serves for probes (KubeRay's own liveness probes use them): the head's dashboard asks the
# GCS whether it is alive; every node's dashboard agent (52365: Ray's default agent port, which the compose
# services and the cluster configs set explicitly) asks the node's own raylet, which only runs while it is
# registered with the GCS. No Ray import is needed, so a check costs milliseconds, not a Ray start-up.
ROLE_URLS = {
    "api": "http://127.0.0.1:8000/health",
    "ray-head": "http://127.0.0.1:8265/api/gcs_healthz",
    "ray-worker": "http://127.0.0.1:52365/api/local_raylet_healthz",
}
# The image's default command serves the API, so a container that names no role is the API.
DEFAULT_ROLE = "api"


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
    # a 503: the API runs but Redis is away, or Ray's GCS or this node's raylet is down
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"{url} did not answer: {error}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


def role_url(role: str | None) -> str:
    """The health URL of a role (None: the API's).

    Args:
        role: `api`, `ray-head` or `ray-worker`.

    Returns:
        The URL to GET.

    Raises:
        ValueError: an unknown role.

    """
    name = role or DEFAULT_ROLE
    if name not in ROLE_URLS:
        raise ValueError(f"unknown {ROLE_VARIABLE} {name!r}: one of {', '.join(ROLE_URLS)}")
    return ROLE_URLS[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; exit status 0 = healthy, 1 = unhealthy (Docker's HEALTHCHECK convention).

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status.

    """
    parser = argparse.ArgumentParser(prog="healthcheck", description=__doc__)
    checks = parser.add_subparsers(dest="check", metavar="CHECK")
    http = checks.add_parser("http", help="GET a URL and expect 2xx")
    http.add_argument("url")
    role = checks.add_parser(
        "role", help=f"the check of this container's role (--role, else ${ROLE_VARIABLE}, else api)"
    )
    role.add_argument("--role", choices=sorted(ROLE_URLS))
    args = parser.parse_args(argv)
    if args.check == "http":
        url = args.url
    else:  # `role`, and no argument at all (the image's HEALTHCHECK may be called bare)
        try:
            url = role_url(getattr(args, "role", None) or os.environ.get(ROLE_VARIABLE))
        except ValueError as error:
            print(f"unhealthy: {error}", file=sys.stderr)
            return 1
    problem = check_http(url)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
