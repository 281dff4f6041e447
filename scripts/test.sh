#!/usr/bin/env bash
# Installs evoprune with its test tools into .venv, makes sure a Redis server is reachable, then runs
# ruff, mypy and the test suite. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# Every dependency at the image's version (deploy/constraints.txt, the same Python): the tests import the
# stack the image runs, and tests/deploy/test_lock.py checks that they agree. The editable install is
# setuptools' strict mode: a tree of links (build/__editable__.*/evoprune/) that mypy and editors follow,
# where the default mode's import hook is invisible to them; a module added since is linked by this run.
python -m pip install --quiet -e ".[test]" --constraint deploy/constraints.txt \
  --config-settings editable_mode=strict

# The browser tests drive Debian's Chromium; install it when missing and we may (root with apt-get).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "warning: could not install chromium; browser tests will fail" >&2
fi

# Redis: use REDIS_URL if given, else 127.0.0.1:6379 if it answers, else start a private server.
started_redis=""
if [ -z "${REDIS_URL:-}" ]; then
  if python - <<'PY' 2>/dev/null
import redis, sys
sys.exit(0 if redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping() else 1)
PY
  then
    export REDIS_URL="redis://127.0.0.1:6379/0"
  elif command -v redis-server >/dev/null; then
    port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --pidfile "/tmp/evoprune-test-redis-$port.pid" --logfile "/tmp/evoprune-test-redis-$port.log"
    export REDIS_URL="redis://127.0.0.1:$port/0"
    started_redis="/tmp/evoprune-test-redis-$port.pid"
  else
    echo "error: no Redis server found. Install one (Debian: apt-get install redis-server) or set REDIS_URL." >&2
    exit 1
  fi
fi
cleanup() { if [ -n "$started_redis" ] && [ -f "$started_redis" ]; then kill "$(cat "$started_redis")" || true; fi; }
trap cleanup EXIT

# EVOPRUNE_SKIP_LINT=1 skips ruff and mypy: .ci/run lints once, then runs further pytest passes through here.
if [ -z "${EVOPRUNE_SKIP_LINT:-}" ]; then
  ruff check .
  # mypy over the installed names, from the folder that holds the installed evoprune/: here at the root,
  # evoprune/ is the top package's __init__.py alone, and mypy would look no further for its subpackages.
  installed=$(python -c 'import evoprune.api, pathlib; print(pathlib.Path(evoprune.api.__file__).parents[2])')
  root=$PWD
  (cd "$installed" && python -m mypy --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" -p evoprune)
fi
python -m pytest "$@"
