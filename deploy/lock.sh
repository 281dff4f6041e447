#!/usr/bin/env bash
# Regenerates deploy/constraints.txt, the one list of versions deploy/Dockerfile installs: the project's
# dependencies with its `gpu` extra, around the pins of deploy/requirements-image.in, for the image's Python
# (3.12) on Linux x86-64. EXCLUDE_NEWER freezes the package index in time, so the same inputs give the same
# file on any machine; move it forward deliberately when upgrading. Needs uv (pip install uv; the current
# file was written by uv 0.13.9) and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
EXCLUDE_NEWER="${EXCLUDE_NEWER:-2026-12-01T00:00:00Z}"
uv pip compile pyproject.toml deploy/requirements-image.in \
  --extra gpu \
  --python-version 3.12 \
  --python-platform x86_64-manylinux_2_28 \
  --no-python-downloads \
  --exclude-newer "$EXCLUDE_NEWER" \
  --custom-compile-command "deploy/lock.sh  (EXCLUDE_NEWER=$EXCLUDE_NEWER)" \
  --output-file deploy/constraints.txt \
  --quiet
