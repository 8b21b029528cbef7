"""Output comparison with Polygraphy's semantics, streamed over batches.

``absdiff = |cand - ref|``, ``reldiff = absdiff / |ref|`` (0/0 counts as 0, x/0 as inf). With the ``elemwise``
statistic an output fails only where an element exceeds BOTH atol and rtol; with ``max``/``mean``/``median`` it
fails only when the statistic of absdiff exceeds atol AND the statistic of reldiff exceeds rtol. Tolerances are
per output with a ``""`` default. The result says which atol (at the given rtol) and which rtol (at the given
atol) would have passed. ``median`` is estimated from a log-spaced histogram (2.3% resolution, upper bin edge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxcompress.errors import RecipeError
from onnxcompress.validation.config import CHECK_STATS, Tolerance

_HIST_LO, _HIST_HI, _PER_DECADE = -30, 10, 100  # log10 range and resolution of the median histogram


class _LogHistogram:
    """Counts of non-negative values in log-spaced bins (plus zero and inf bins) for a streaming median."""

    def __init__(self):
        self.counts = np.zeros((_HIST_HI - _HIST_LO) * _PER_DECADE + 2, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        v = values[np.isfinite(values)]
        zero = int((v <= 0).sum())
        pos = v[v > 0]
        idx = np.clip(np.floor((np.log10(pos) - _HIST_LO) * _PER_DECADE).astype(np.int64) + 1, 1, len(self.counts) - 2)
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.counts[0] += zero
        self.counts[-1] += int((~np.isfinite(values)).sum())

    def quantile(self, q: float) -> float:
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.counts), math.ceil(q * total)))
        if i == 0:
            return 0.0
        if i == len(self.counts) - 1:
            return math.inf
        return float(10 ** (_HIST_LO + i / _PER_DECADE))  # upper edge of bin i


@dataclass(frozen=True)
class Comparison:
    """The tolerance check of one output and the atol (at the given rtol) / rtol (at the given atol) that would
    have passed."""

    atol: float
    rtol: float
    check_stat: str
    elements: int
    max_abs: float
    max_rel: float
    mean_abs: float
    mean_rel: float
    nonfinite: int
    passed: bool
    would_pass_atol: float
    would_pass_rtol: float
    mismatches: int | None = None  # elemwise only
    stat_abs: float | None = None  # max/mean/median only
    stat_rel: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "atol": self.atol, "rtol": self.rtol, "check_stat": self.check_stat, "elements": self.elements,
            "max_abs": self.max_abs, "max_rel": self.max_rel, "mean_abs": self.mean_abs, "mean_rel": self.mean_rel,
            "nonfinite": self.nonfinite}
        if self.mismatches is not None:
            out.update(mismatches=self.mismatches, mismatch_fraction=self.mismatches / max(self.elements, 1))
        else:
            out.update(stat_abs=self.stat_abs, stat_rel=self.stat_rel)
        out["would_pass"] = {"atol": self.would_pass_atol, "rtol": self.would_pass_rtol}
        out["passed"] = self.passed
        return out


@dataclass
class OutputComparison:
    """Streaming comparison state of one output."""

    name: str
    tolerance: Tolerance
    stat: str = "elemwise"
    elements: int = 0
    mismatches: int = 0
    nonfinite: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    sum_abs: float = 0.0
    sum_rel: float = 0.0
    atol_needed: float = 0.0  # smallest atol that passes elemwise at the given rtol
    rtol_needed: float = 0.0  # smallest rtol that passes elemwise at the given atol
    hist_abs: _LogHistogram = field(default_factory=_LogHistogram)
    hist_rel: _LogHistogram = field(default_factory=_LogHistogram)

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float64)
        c = np.asarray(cand, dtype=np.float64)
        absdiff = np.abs(c - r)
        with np.errstate(divide="ignore", invalid="ignore"):
            reldiff = np.where(absdiff == 0, 0.0, absdiff / np.abs(r))
        bad = ~np.isfinite(absdiff)
        self.nonfinite += int(bad.sum())
        absdiff = np.where(bad, math.inf, absdiff)
        reldiff = np.where(bad, math.inf, reldiff)
        tol = self.tolerance
        self.elements += absdiff.size
        self.mismatches += int(((absdiff > tol.atol) & (reldiff > tol.rtol)).sum())
        self.max_abs = max(self.max_abs, float(absdiff.max(initial=0.0)))
        self.max_rel = max(self.max_rel, float(reldiff.max(initial=0.0)))
        self.sum_abs += float(absdiff.sum())
        self.sum_rel += float(reldiff.sum())
        self.atol_needed = max(self.atol_needed, float(absdiff[reldiff > tol.rtol].max(initial=0.0)))
        self.rtol_needed = max(self.rtol_needed, float(reldiff[absdiff > tol.atol].max(initial=0.0)))
        if self.stat == "median":
            self.hist_abs.add(absdiff.ravel())
            self.hist_rel.add(reldiff.ravel())

    def _stats(self) -> tuple[float, float]:
        n = max(self.elements, 1)
        if self.stat == "max":
            return self.max_abs, self.max_rel
        if self.stat == "mean":
            return self.sum_abs / n, self.sum_rel / n
        return self.hist_abs.quantile(0.5), self.hist_rel.quantile(0.5)

    def result(self) -> Comparison:
        tol = self.tolerance
        n = max(self.elements, 1)
        common = dict(atol=tol.atol, rtol=tol.rtol, check_stat=self.stat, elements=self.elements,
                      max_abs=self.max_abs, max_rel=self.max_rel, mean_abs=self.sum_abs / n,
                      mean_rel=self.sum_rel / n, nonfinite=self.nonfinite)
        if self.stat == "elemwise":
            passed = self.mismatches == 0 and self.nonfinite == 0
            return Comparison(**common, passed=passed, would_pass_atol=self.atol_needed,
                              would_pass_rtol=self.rtol_needed, mismatches=self.mismatches)
        s_abs, s_rel = self._stats()
        passed = not (s_abs > tol.atol and s_rel > tol.rtol) and self.nonfinite == 0
        return Comparison(**common, passed=passed, would_pass_atol=s_abs if s_rel > tol.rtol else tol.atol,
                          would_pass_rtol=s_rel if s_abs > tol.atol else tol.rtol, stat_abs=s_abs, stat_rel=s_rel)


def check_stat(stat: str) -> str:
    if stat not in CHECK_STATS:
        raise RecipeError(f"unknown check statistic '{stat}'", hint=f"use one of {CHECK_STATS}")
    return stat
