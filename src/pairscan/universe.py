"""Universe: which tickers a question is about, from names, shell patterns or a file.

``--tickers``, ``--exclude`` and ``--with`` take the same kind of list: names or
shell-style patterns (``*``, ``?``, ``[...]``) separated by commas, or ``@FILE`` with one
per line (``#`` starts a comment). In the Python API the same keywords take such a
string or any iterable of names and patterns. A name that is not in the store, or a
pattern that matches nothing, is bad input: a list that silently selects less than
was asked answers another question.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import PairscanError

PATTERN_CHARACTERS = frozenset("*?[")


def parse_list(value, *, option: str = "tickers") -> tuple[str, ...] | None:
    """The names and patterns of ``value``, in the order given, without repeats.

    ``value`` is None (no list), a string (``"a,b,c*"`` or ``"@FILE"``) or an iterable of
    strings. ``option`` is how the caller spelled the option, for messages.
    """
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        items = _read_list_file(text[1:], option) if text.startswith("@") else text.split(",")
    elif isinstance(value, Iterable):
        items = list(value)
        if not all(isinstance(item, str) for item in items):
            raise PairscanError(f"{option} must be names or patterns (strings), not {value!r}")
    else:
        raise PairscanError(f"{option} must be a list of names or patterns, not {value!r}")
    names = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not names:
        raise PairscanError(f"{option} names no ticker")
    return names


def _read_list_file(path: str, option: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise PairscanError(f"{option}: cannot read the list ({reason})", path) from None
    return [line.split("#", 1)[0] for line in text.splitlines()]


def is_pattern(item: str) -> bool:
    return any(c in PATTERN_CHARACTERS for c in item)


def match(items: Iterable[str], tickers: Iterable[str], *, option: str = "tickers") -> list[str]:
    """The tickers (of ``tickers``, kept in their order) that ``items`` name or match.

    Raises :class:`PairscanError` for a name not among ``tickers`` (with the closest
    one as a suggestion) or a pattern that matches none of them.
    """
    tickers = list(tickers)
    known = set(tickers)
    chosen: set[str] = set()
    for item in items:
        if is_pattern(item):
            found = [t for t in tickers if fnmatch.fnmatchcase(t, item)]
            if not found:
                raise PairscanError(f"{option}: the pattern {item!r} matches no ticker in the store")
            chosen.update(found)
        elif item in known:
            chosen.add(item)
        else:
            raise PairscanError(f"{option}: no ticker {item!r} in the store{_suggestion(item, tickers)}")
    return [t for t in tickers if t in chosen]


def _suggestion(name: str, tickers: list[str]) -> str:
    same_case = {t.lower(): t for t in tickers}
    guess = same_case.get(name.lower()) or next(iter(difflib.get_close_matches(name, tickers, n=1)), None)
    return f"; did you mean {guess!r}?" if guess else ""


def select(tickers: Iterable[str], include=None, exclude=None, *,
           options: tuple[str, str] = ("tickers", "exclude")) -> list[str]:
    """``tickers`` cut to those ``include`` matches (all when None), less those ``exclude``
    matches. Both are parsed with :func:`parse_list`; ``options`` name them for messages."""
    tickers = list(tickers)
    include = parse_list(include, option=options[0])
    exclude = parse_list(exclude, option=options[1])
    chosen = match(include, tickers, option=options[0]) if include is not None else tickers
    if exclude is not None:
        dropped = set(match(exclude, tickers, option=options[1]))
        chosen = [t for t in chosen if t not in dropped]
    return chosen
