"""The installed evoprune version: the string `evoprune --version` prints and the top package re-exports."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evoprune")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
