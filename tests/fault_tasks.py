"""Task functions that fail on purpose, for the fault tests.

They live in a module (not in a test) so that process-pool workers can import them.
``marker``: a path; when given, the task fails only while that file does not exist, and
creates it as it fails, so a retry succeeds.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pairscan.errors import PairscanError


def _first_time(marker: str | None) -> bool:
    if marker is None:
        return True
    try:
        Path(marker).touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def square(label: str, x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def raise_on(bad: str, marker: str | None, label: str, x: int) -> tuple[int, int]:
    if label == bad and _first_time(marker):
        raise ValueError(f"boom on {label}")
    return square(label, x)


def die_on(bad: str, marker: str | None, label: str, x: int) -> tuple[int, int]:
    """The worker process running ``bad`` is killed, as the out-of-memory killer would."""
    if label == bad and _first_time(marker):
        os.kill(os.getpid(), signal.SIGKILL)
    return square(label, x)


def exit_on(bad: str, marker: str | None, label: str, x: int) -> tuple[int, int]:
    """The worker process running ``bad`` ends at once, as a crash in native code would."""
    if label == bad and _first_time(marker):
        os._exit(3)
    return square(label, x)


def bad_input_on(bad: str, marker: str | None, label: str, x: int) -> tuple[int, int]:
    if label == bad:
        _first_time(marker)
        raise PairscanError("not a number", f"{label}.json", 7)
    return square(label, x)
