"""A store's tickers: listing them, finding one, removing those whose source is gone."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import PairscanError
from . import formats
from .formats import FORMATS
from .manifest import read_manifest


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


def ticker_file(files: dict[str, Path], ticker: str, store: str | os.PathLike) -> Path:
    """The stored file of ``ticker``; bad input naming the closest ticker if there is none."""
    if ticker in files:
        return files[ticker]
    same_case = {t.lower(): t for t in files}
    guess = same_case.get(str(ticker).lower()) or next(iter(difflib.get_close_matches(str(ticker), files, n=1)), None)
    hint = f"; did you mean {guess!r}?" if guess else " in the store"
    raise PairscanError(f"no ticker {ticker!r}{hint}", store)


# The fields of a ticker's manifest entry a rerun relies on, and their types. Other


def empty_store_error(store: str | os.PathLike) -> PairscanError:
    """What to say of a store with no tickers: a folder of source files needs ``pairscan convert``."""
    from ..readers import holds_sources

    if holds_sources(store):
        return PairscanError("this folder holds source files but no store: run pairscan convert on it first", store)
    return PairscanError("the store holds no tickers", store)


def remove_tickers(store: str | os.PathLike, tickers, suffix: str) -> None:
    """Remove the stored files of ``tickers`` (``<ticker><suffix>``) from ``store``.

    Call it only for tickers the manifest says are pairscan's, then drop their entries
    from the manifest: a run killed in between leaves entries whose file is gone,
    which the next run removes again, never a file without its entry.
    """
    for ticker in tickers:
        path = Path(store) / (ticker + suffix)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PairscanError(f"cannot remove this stored file, whose source is gone ({exc.strerror})",
                                path) from None


def store_format(files: dict[str, Path]) -> str:
    """The format of a store's files (as :func:`store_files` lists them) where its manifest
    does not say: ``"hdf5"`` if any file is, else ``"parquet"``."""
    return "hdf5" if any(formats.name_of(p) == "hdf5" for p in files.values()) else "parquet"
