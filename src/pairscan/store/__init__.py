"""The store: one file per ticker (HDF5 or Parquet), a manifest, atomic writes.

- :mod:`.files`: where each ticker is stored (the one rule from a ticker to its file
  name, and the check every write and removal goes through), atomic writes, temporary
  files, the write lock;
- :mod:`.formats`: the registry of formats (``hdf5``, ``parquet``) and their readers and writers;
- :mod:`.frames`: a ticker's frame written to or read from its file;
- :mod:`.manifest`: what convert recorded, and how far it is trusted;
- :mod:`.tickers`: the store's tickers and their files.
"""

from .files import (
    FILE_MODE,
    LOCK,
    MANIFEST,
    atomic_path,
    checked_stored_file,
    remove_stale_temporaries,
    store_child,
    store_lock,
    stored_name,
    stored_path,
    ticker_of,
    ticker_problem,
    unlink_stored,
    write_atomically,
)
from .formats import FORMATS
from .frames import (
    read_column,
    read_column_arrays,
    read_column_period,
    read_frame,
    read_index_array,
    seem_cached,
    stored_layout,
    stored_span,
    will_read,
    write_frame,
)
from .manifest import read_manifest, recorded_layouts, stamp_entry, stored_file_intact, write_manifest
from .tickers import empty_store_error, remove_tickers, store_files, store_format, store_paths, ticker_file

__all__ = [
    "FILE_MODE", "FORMATS", "LOCK", "MANIFEST", "atomic_path", "checked_stored_file", "store_child", "stored_name",
    "stored_path", "ticker_of", "ticker_problem", "unlink_stored", "empty_store_error", "read_column",
    "read_column_arrays", "read_column_period", "read_frame", "read_index_array", "read_manifest", "recorded_layouts",
    "remove_stale_temporaries", "seem_cached",
    "remove_tickers", "stamp_entry", "store_files", "store_format", "store_paths", "store_lock", "stored_file_intact", "stored_layout", "stored_span",
    "ticker_file", "will_read", "write_atomically", "write_frame", "write_manifest",
]
