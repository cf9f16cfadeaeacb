"""Checks of the public functions' arguments: a wrong type is one :class:`PairscanError`
in the caller's words (``k must be an integer, got '3'``), never a ``TypeError`` from
deep inside. Each returns the value it checked.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from .errors import PairscanError


def path(name: str, value, optional: bool = False):
    """A file or folder path: ``str`` or ``os.PathLike`` (None if ``optional``)."""
    if value is None and optional:
        return value
    if isinstance(value, str) or (isinstance(value, os.PathLike) and isinstance(os.fspath(value), str)):
        if not os.fspath(value):
            raise PairscanError(f"{name} must be a path, got an empty string")
        if "\x00" in os.fspath(value):
            raise PairscanError(f"{name} must be a path, got one with a NUL character: {os.fspath(value)!r}")
        return value
    raise PairscanError(f"{name} must be a path (str or os.PathLike), got {_shown(value)}")


def store_or_frame(name: str, value):
    """A store folder's path or a panel DataFrame."""
    if isinstance(value, pd.DataFrame):
        return value
    try:
        return path(name, value)
    except PairscanError:
        raise PairscanError(f"{name} must be a store folder (str or os.PathLike) or a DataFrame, "
                            f"got {_shown(value)}") from None


def integer(name: str, value, low: int | None = None, optional: bool = False):
    """A whole number (``int`` or a numpy integer, not a bool), at least ``low``."""
    if value is None and optional:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        at_least = f" >= {low}" if low is not None else ""
        raise PairscanError(f"{name} must be an integer{at_least}, got {_shown(value)}")
    if low is not None and value < low:
        raise PairscanError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)


def boolean(name: str, value, optional: bool = False):
    if value is None and optional:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise PairscanError(f"{name} must be True or False, got {_shown(value)}")
    return bool(value)


def text(name: str, value, optional: bool = False):
    if value is None and optional:
        return value
    if not isinstance(value, str):
        raise PairscanError(f"{name} must be a string, got {_shown(value)}")
    return value


def texts(name: str, value, optional: bool = False):
    """A collection of strings (a list of tickers), not one string."""
    if value is None and optional:
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (Collection, pd.Index, np.ndarray)):
        raise PairscanError(f"{name} must be a list of strings, got {_shown(value)}")
    for item in value:
        if not isinstance(item, str):
            raise PairscanError(f"{name} must be a list of strings, but it holds {_shown(item)}")
    return value


def pairs(name: str, value, optional: bool = False):
    """Pairs of tickers: ``[("a", "b"), ...]``, or one pair ``("a", "b")``."""
    if value is None and optional:
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise PairscanError(f"{name} must be a list of (ticker, ticker) pairs, got {_shown(value)}")
    if len(value) == 2 and all(isinstance(t, str) for t in value):
        return value
    for item in value:
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2 or \
                not all(isinstance(t, str) for t in item):
            raise PairscanError(f"{name} must be a list of (ticker, ticker) pairs, but it holds {_shown(item)}")
    return value


def _shown(value) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else f"a {type(value).__name__}"
