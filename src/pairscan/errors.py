"""The one error type for bad input."""

from __future__ import annotations

import os


class PairscanError(Exception):
    """Bad input or usage: what is wrong, and where.

    Carries the file (when there is one), the 1-based line (when there is one)
    and the reason. ``str(err)`` is the one line the command line prints before
    exiting with status 2.
    """

    def __init__(self, reason: str, file: str | os.PathLike | None = None, line: int | None = None):
        self.reason = reason
        self.file = os.fspath(file) if file is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        return where + self.reason

    def __reduce__(self):
        # Keep file and line when the error crosses a process boundary.
        return (type(self), (self.reason, self.file, self.line))
