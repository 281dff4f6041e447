"""evoprune: multi-objective evolutionary pruning of transfer-learning heads (MO-EvoPruneDeepTL)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evoprune")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
