"""The store's formats: a registry from a format's name and its files' suffix to its module.

Each format module (:mod:`.hdf5`, :mod:`.parquet`) has ``NAME``, ``SUFFIX``,
``image(frame, name)`` (the bytes of a stored file), ``read_frame(path)``,
``read_column(path, column)`` (index and values), ``read_index(path)`` and
``span(path)``. This is the only place that looks at a stored file's suffix.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from . import hdf5, parquet

_MODULES: dict[str, ModuleType] = {m.NAME: m for m in (hdf5, parquet)}
FORMATS: dict[str, str] = {name: m.SUFFIX for name, m in _MODULES.items()}  # name -> suffix


def by_name(name: str) -> ModuleType:
    """The format called ``name`` (``"hdf5"`` or ``"parquet"``); KeyError for another."""
    return _MODULES[name]


def for_path(path: str | os.PathLike) -> ModuleType | None:
    """The format of a stored file, by its suffix; None for a file of no store format."""
    suffix = Path(path).suffix
    return next((m for m in _MODULES.values() if m.SUFFIX == suffix), None)


def name_of(path: str | os.PathLike) -> str | None:
    """The name of the format of a stored file, by its suffix; None for another file."""
    module = for_path(path)
    return module.NAME if module is not None else None
