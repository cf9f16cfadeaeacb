"""Out of sample: ``pairscan backtest``, pairs chosen in a formation window and judged
in the trading window that follows (docs/backtest.md).

:mod:`.windows` (lengths and bounds), :mod:`.rule` (the trading rule on one pair),
:mod:`.evaluate` (one window, as a task), :mod:`.run` (the windows on the executor,
the typed result), :mod:`.render` (text, plot, report).
"""

from .run import Backtest, backtest
from .windows import Length, Window, parse_length, windows

__all__ = ["Backtest", "Length", "Window", "backtest", "parse_length", "windows"]
