#!/usr/bin/env bash
# Regenerates deploy/constraints.txt, the one list of versions deploy/Dockerfile installs: the project's
# dependencies with its `gpu` and `export` extras (an image built with EXTRAS=gpu,export converts to ONNX),
# around the pins of deploy/requirements-image.in, for the image's Python (3.11, the Python of the dev
# machines and CI too) on Linux x86-64. Needs access to PyPI and uv at
# UV_VERSION (pip install "uv==0.13.9"; the test extra pins it).
#
# The same inputs give the same file, on any machine and on any day, because every input of the resolution
# is fixed here:
#   - EXCLUDE_NEWER freezes the index in time, and must lie in the past: a cutoff still to come lets every
#     release made before it slip in (the previous lock named a date three weeks ahead, so running it again
#     moved uvicorn, filelock, smart-open, virtualenv and python-discovery). Move it forward deliberately
#     when upgrading, to a date at least a day old (mirrors and caches lag behind PyPI).
#   - --upgrade: uv otherwise prefers the pins already in the output file, so the result depended on what the
#     file held before, not only on the inputs.
#   - the index is PyPI (LOCK_INDEX_URL to use a mirror of it) and --no-config ignores uv.toml files and
#     UV_* settings of the machine running it; the uv version is checked.
# OUTPUT=path writes elsewhere (tests/deploy/test_lock.sh runs it twice and compares with the committed file).
set -euo pipefail
cd "$(dirname "$0")/.."
EXCLUDE_NEWER="${EXCLUDE_NEWER:-2026-12-01T00:00:00Z}"
OUTPUT="${OUTPUT:-deploy/constraints.txt}"
UV_VERSION=0.13.9
PYTHON_VERSION=3.11
# a cutoff must be at least this old: a younger one can still gain uploads that mirrors have not shown yet
MIN_AGE_S=86400

installed="$(uv --version 2>/dev/null | awk '{print $2}')" || true
if [ "$installed" != "$UV_VERSION" ]; then
  echo "deploy/lock.sh needs uv $UV_VERSION (found: ${installed:-none}); pip install \"uv==$UV_VERSION\"" >&2
  exit 1
fi
cutoff_s="$(date -u -d "$EXCLUDE_NEWER" +%s)" || { echo "EXCLUDE_NEWER=$EXCLUDE_NEWER is not a date" >&2; exit 1; }
if [ $(( $(date -u +%s) - cutoff_s )) -lt "$MIN_AGE_S" ]; then
  echo "EXCLUDE_NEWER=$EXCLUDE_NEWER is not at least a day in the past: releases made before it could still" \
       "change the result. Pick an earlier date." >&2
  exit 1
fi

UV_NO_CONFIG=1 uv pip compile pyproject.toml deploy/requirements-image.in \
  --no-config \
  --upgrade \
  --default-index "${LOCK_INDEX_URL:-https://pypi.org/simple}" \
  --extra gpu \
  --extra export \
  --python-version "$PYTHON_VERSION" \
  --python-platform x86_64-manylinux_2_28 \
  --no-python-downloads \
  --exclude-newer "$EXCLUDE_NEWER" \
  --custom-compile-command "deploy/lock.sh  (EXCLUDE_NEWER=$EXCLUDE_NEWER, uv $UV_VERSION)" \
  --output-file "$OUTPUT" \
  --quiet
