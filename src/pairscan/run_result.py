"""What :func:`pairscan.run` found: one typed value the command line, the JSON and the report render from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from .correlate import Correlation

SEARCH_K = 10  # partners of each ticker the report's search shows


@dataclass(frozen=True)
class RunNetwork:
    """A run's correlation network, as the report shows it: the picture of the tree
    (a PNG, or None), each ticker's cluster (numbered from 1, largest first) and how
    many tickers no edge reaches (no ranked pair: each a cluster of its own); what ran
    it (``executor``, ``workers``) and how the forest was found (``forest``)."""

    picture: Path | None
    clusters: Mapping[str, int]
    lone: int = 0
    executor: str | None = None
    workers: int = 1
    forest: str = ""


@dataclass(frozen=True)
class RunResult:
    """The stages' facts of one run.

    ``correlation`` is the top pairs' :class:`~pairscan.correlate.Correlation` (with the
    selection, the min-periods in force, timings and, where drawn, the matrix);
    ``convert`` convert's summary (None when the source was a store); ``analysis`` the
    analysed top pairs (:func:`pairscan.analyze.analyze_top`'s frame); ``partners``
    the answer to ``partners_of`` (``--with``); ``search`` every ticker's
    :data:`SEARCH_K` best partners, computed for the report's search; ``plots`` the
    pictures written (``pair``, ``partners``, ``spread``, ``heatmap``); ``stages`` each
    stage's wall time in seconds; ``network`` the network to show (None until a run
    computes one); ``report`` the page written, if any.
    """

    correlation: Correlation
    source: str
    data: str
    store: str
    convert: dict | None
    plots: Mapping[str, str] = field(default_factory=dict)
    stages: Mapping[str, float] = field(default_factory=dict)
    analysis: pd.DataFrame | None = None
    partners: Correlation | None = None
    search: Correlation | None = None
    network: RunNetwork | None = None
    report: Path | None = None

    @property
    def analysis_json(self) -> dict | None:
        """The analysis as ``analyze --json`` prints it (None when nothing was analysed)."""
        if self.analysis is None:
            return None
        from .analyze import analysis_dict

        return analysis_dict(self.analysis)

    def to_json(self) -> dict:
        """What ``run --json`` prints: correlate's object, then what the other stages did."""
        out = self.correlation.to_dict()
        if self.partners is not None:
            answer = self.partners.to_dict()
            out.update({"with": answer["with"], "partners": answer["partners"]})
        out.update(source=self.source, data=self.data, store=self.store, convert=self.convert,
                   plots=dict(self.plots), stages={k: round(v, 4) for k, v in self.stages.items()})
        if self.analysis is not None:
            out["analysis"] = self.analysis_json
        if self.report is not None:
            out["report"] = str(self.report)
        return out
