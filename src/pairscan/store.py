"""The store: one file per ticker (HDF5 or Parquet), a manifest, atomic writes.

A stored frame is indexed by a sorted, unique ``DatetimeIndex`` named ``timestamp``
with float64 price columns; ``pd.read_hdf(path, "/data")`` or ``pd.read_parquet(path)``
returns it. Every file is written to a temporary name beside its target and moved into
place with ``os.replace``, so a reader (or a rerun after a crash) sees it whole or not
at all.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PairscanError

FORMATS = {"hdf5": ".h5", "parquet": ".parquet"}
MANIFEST = ".pairscan-manifest.json"
HDF5_KEY = "data"

def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files made by mkstemp are private; the store's files get the usual permissions.
FILE_MODE = 0o666 & ~_umask()

# PyTables is not thread-safe: every HDF5 call in this process goes through this lock.
HDF5_LOCK = threading.RLock()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``target``; move it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# What atomic_path names its temporary files: ".<target>.<8 random characters>.tmp".
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


def remove_stale_temporaries(store: str | os.PathLike) -> list[str]:
    """Remove the temporary files a killed run left in ``store``; return their names.

    Only pairscan's own: those of a stored frame or of the manifest. Call it when no
    other run writes to the same store.
    """
    removed = []
    for path in Path(store).glob(".*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if not match:
            continue
        target = match["target"]
        if target == MANIFEST or Path(target).suffix in FORMATS.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return sorted(removed)


def write_frame(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Store one ticker's frame at ``path`` (format by suffix), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == FORMATS["parquet"]:
            frame.to_parquet(tmp, engine="pyarrow", compression="zstd")
        else:
            os.unlink(tmp)  # PyTables opens with mode "w" itself
            with HDF5_LOCK, warnings.catch_warnings():
                # Extra text columns make pandas warn that they are pickled; that is fine.
                warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
                frame.to_hdf(tmp, key=HDF5_KEY, mode="w", format="fixed")


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Read a whole stored frame."""
    path = Path(path)
    try:
        if path.suffix == FORMATS["parquet"]:
            return pd.read_parquet(path, engine="pyarrow")
        with HDF5_LOCK:
            return pd.read_hdf(path, "/" + HDF5_KEY)
    except (OSError, ValueError, KeyError, *_damaged()) as exc:
        raise PairscanError(f"cannot read stored frame ({_last_line(exc)})", path) from None


def _last_line(exc: BaseException) -> str:
    """HDF5 errors carry a whole back trace; the last line says what is wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _damaged() -> tuple[type[Exception], ...]:
    """What PyTables raises for a damaged file (not an OSError)."""
    import tables

    return (tables.HDF5ExtError, tables.NoSuchNodeError)


def read_column(path: str | os.PathLike, column: str) -> pd.Series:
    """Read one column of a stored frame as a float64 Series indexed by timestamp.

    Reads only that column where the format allows: Parquet by column, HDF5 straight
    from the array that holds it (falling back to ``pd.read_hdf`` for layouts pandas
    may write that this does not know).
    """
    path = Path(path)
    try:
        if path.suffix == FORMATS["parquet"]:
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=["timestamp", column])
            index = pd.DatetimeIndex(table.column("timestamp").to_numpy(), name="timestamp")
            values = table.column(column).to_numpy()
        else:
            index, values = _read_hdf5_column(path, column)
    except KeyError:
        raise PairscanError(f"no column {column!r} in the stored frame", path) from None
    except (OSError, ValueError, *_damaged()) as exc:
        if "column" in str(exc) and column in str(exc):
            raise PairscanError(f"no column {column!r} in the stored frame", path) from None
        raise PairscanError(f"cannot read stored frame ({_last_line(exc)})", path) from None
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PairscanError(f"column {column!r} is not numeric", path) from None
    return pd.Series(values, index=index.as_unit("ns"), name=path.stem)


def _read_hdf5_column(path: Path, column: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    # Opening nodes and their attribute sets is most of the cost of a small read, so
    # this touches only the nodes of pandas' fixed layout that hold the column.
    import tables

    with HDF5_LOCK, tables.open_file(path, mode="r") as h5:
        try:
            axis = h5.get_node(f"/{HDF5_KEY}/axis1")
            kind = str(axis.get_attr("kind"))
        except (tables.NoSuchNodeError, AttributeError):
            kind = ""  # not pandas' fixed layout
        for block in itertools.count() if kind.startswith("datetime64[") else ():
            try:
                names = h5.get_node(f"/{HDF5_KEY}/block{block}_items").read()
            except tables.NoSuchNodeError:
                raise KeyError(column) from None
            items = [i.decode() if isinstance(i, bytes) else str(i) for i in names]
            if column in items:
                values = h5.get_node(f"/{HDF5_KEY}/block{block}_values")
                if values.get_attr("CLASS") != "ARRAY":
                    break  # an object (text) block: let pandas decode it
                data = values[:, items.index(column)]
                return pd.DatetimeIndex(axis.read().astype(kind), name="timestamp"), data
    frame = read_frame(path)
    return pd.DatetimeIndex(frame.index, name="timestamp"), frame[column].to_numpy()


def store_files(store: str | os.PathLike) -> dict[str, Path]:
    """The store's tickers and their files, sorted by ticker.

    Raises :class:`PairscanError` if ``store`` is not a folder or holds one ticker in
    both formats while the manifest does not say which is current.
    """
    store = Path(store)
    if not store.is_dir():
        raise PairscanError("no such store (expected a folder of .h5 or .parquet files)", store)
    fmt = read_manifest(store).get("format")
    found: dict[str, Path] = {}
    for name, suffix in FORMATS.items():
        if fmt and name != fmt:
            continue
        for path in store.glob("*" + suffix):
            if path.name.startswith("."):
                continue
            if path.stem in found:
                raise PairscanError(
                    f"ticker {path.stem!r} is stored both as {found[path.stem].name} and {path.name}", store
                )
            found[path.stem] = path
    return dict(sorted(found.items()))


def empty_store_error(store: str | os.PathLike) -> PairscanError:
    """What to say of a store with no tickers: a folder of source files needs ``pairscan convert``."""
    from .readers import holds_sources

    if holds_sources(store):
        return PairscanError("this folder holds source files but no store: run pairscan convert on it first", store)
    return PairscanError("the store holds no tickers", store)


def read_manifest(store: str | os.PathLike) -> dict:
    """The store's manifest, or an empty one. A damaged manifest counts as empty."""
    path = Path(store) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def write_manifest(store: str | os.PathLike, manifest: dict) -> None:
    """Write the manifest atomically."""
    with atomic_path(Path(store) / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
