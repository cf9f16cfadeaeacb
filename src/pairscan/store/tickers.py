"""A store's tickers: listing them, finding one, removing those whose source is gone."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import PairscanError
from . import formats
from .files import stored_name, ticker_of, unlink_stored
from .formats import FORMATS
from .manifest import read_manifest


def store_files(store: str | os.PathLike, manifest: dict | None = None) -> dict[str, Path]:
    """The store's tickers and their files, sorted by ticker (``manifest``: the store's,
    :func:`~pairscan.store.manifest.read_manifest`, if the caller has read it already).

    A file is a ticker's if its name is the one :func:`~pairscan.store.files.stored_name`
    gives that ticker (the ticker is decoded from it); other files are not the store's.
    Raises :class:`PairscanError` if ``store`` is not a folder that can be listed, or
    holds one ticker in both formats while the manifest does not say which is current.
    """
    return {ticker: Path(path) for ticker, path in store_paths(store, manifest).items()}


def store_paths(store: str | os.PathLike, manifest: dict | None = None) -> dict[str, str]:
    """:func:`store_files` with each file's path as a string: what a load of thousands of
    files takes, without a ``Path`` object for each."""
    folder = os.fspath(Path(store))
    try:
        if not os.path.isdir(folder):
            raise PairscanError("no such store (expected a folder of .h5 or .parquet files)", folder)
        with os.scandir(folder) as entries:
            names = sorted(entry.name for entry in entries)
    except OSError as exc:
        raise PairscanError(f"cannot list the store ({exc.strerror or exc})", folder) from None
    manifest = read_manifest(store) if manifest is None else manifest
    fmt = manifest.get("format")
    # The files the manifest's entries name: each is its ticker's stored_name (read_manifest
    # checked it), so that ticker is the one ticker_of decodes from it, without decoding.
    named = {entry["file"]: ticker for ticker, entry in manifest["tickers"].items()
             if entry["file"] is not None} if fmt else {}
    found: dict[str, str] = {}
    for name, suffix in FORMATS.items():
        if fmt and name != fmt:
            continue
        for file in names:
            ticker = named.get(file) or ticker_of(file, suffix)
            if ticker is None:
                continue
            if ticker in found:
                raise PairscanError(
                    f"ticker {ticker!r} is stored both as {os.path.basename(found[ticker])} and {file}", folder
                )
            found[ticker] = os.path.join(folder, file)
    return dict(sorted(found.items()))


def ticker_file(files: dict[str, Path], ticker: str, store: str | os.PathLike) -> Path:
    """The stored file of ``ticker``; bad input naming the closest ticker if there is none."""
    if ticker in files:
        return files[ticker]
    same_case = {t.lower(): t for t in files}
    guess = same_case.get(str(ticker).lower()) or next(iter(difflib.get_close_matches(str(ticker), files, n=1)), None)
    hint = f"; did you mean {guess!r}?" if guess else " in the store"
    raise PairscanError(f"no ticker {ticker!r}{hint}", store)



def empty_store_error(store: str | os.PathLike) -> PairscanError:
    """What to say of a store with no tickers: a folder of source files needs ``pairscan convert``."""
    from ..readers import holds_sources

    if holds_sources(store):
        return PairscanError("this folder holds source files but no store: run pairscan convert on it first", store)
    return PairscanError("the store holds no tickers", store)


def remove_tickers(store: str | os.PathLike, tickers, suffix: str) -> None:
    """Remove the stored files of ``tickers`` (each its :func:`~pairscan.store.files.stored_name`)
    from ``store``.

    Call it only for tickers the manifest says are pairscan's, then drop their entries
    from the manifest: a run killed in between leaves entries whose file is gone,
    which the next run removes again, never a file without its entry.
    """
    for ticker in tickers:
        try:
            name = stored_name(ticker, suffix)
        except PairscanError:
            continue  # no file can have been stored under it
        path = Path(store) / name
        try:
            unlink_stored(store, path)
        except OSError as exc:
            raise PairscanError(f"cannot remove this stored file, whose source is gone ({exc.strerror})",
                                path) from None


def store_format(files: dict[str, Path]) -> str:
    """The format of a store's files (as :func:`store_files` lists them) where its manifest
    does not say: ``"hdf5"`` if any file is, else ``"parquet"``."""
    return "hdf5" if any(formats.name_of(p) == "hdf5" for p in files.values()) else "parquet"
