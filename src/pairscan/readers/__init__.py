"""Readers: one per input format, in a registry; ``discover`` finds a source's tickers.

Importing the package registers every reader. ``convert`` asks the registry; it never
branches on format.
"""

from . import jsonl, csv, parquet, table, wide  # noqa: F401 - registers the readers
from .base import (BAD_LINE_MODES, DEFAULT_MAX_BYTES, LAYOUTS, READERS, Found, Parsed, Reader, check_file, discover,
                   holds_sources, polars_started, reader_for)

__all__ = ["BAD_LINE_MODES", "DEFAULT_MAX_BYTES", "LAYOUTS", "READERS", "Found", "Parsed", "Reader", "check_file", "discover",
           "holds_sources", "polars_started", "reader_for"]
