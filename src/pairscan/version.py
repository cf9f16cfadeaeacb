"""The version of pairscan, as installed (pyproject.toml is the one place that sets it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pairscan")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
