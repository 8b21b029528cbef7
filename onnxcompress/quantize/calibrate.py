"""Streaming range collectors: min/max, and bounded histograms of |x| for percentile, entropy (KL) and MSE.

Memory is bounded by (number of calibrated tensors) x (number of bins): every batch is folded into the collectors
and dropped. :meth:`Collector.collect` takes ONE pass over the data for every calibrator: min/max are running, and
each |x| histogram starts at the first batch's maximum and, when a later batch exceeds it, doubles its range by
merging adjacent bins (exact: the bin edges of the wider histogram are edges of the narrower one). It keeps
2 x num_bins bins so that at least num_bins cover [0, max|x|]; trailing empty bins are trimmed at the end.
(The older two-pass API, :meth:`minmax_pass` then :meth:`histogram_pass`, is kept: exactly num_bins bins.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from onnxcompress.errors import NonFiniteDataError

log = logging.getLogger(__name__)


@dataclass
class TensorStats:
    """What we keep per tensor: running min/max and (optionally) a histogram of |x| over [0, absmax]."""

    rmin: float = float("inf")
    rmax: float = float("-inf")
    hist: np.ndarray | None = None
    edge: float = 0.0  # the histogram covers [0, edge]
    count: int = 0

    def update_minmax(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        self.rmin, self.rmax = min(self.rmin, lo), max(self.rmax, hi)
        self.count += x.size

    def update_adaptive(self, x: np.ndarray, bins: int) -> None:
        """Running min/max and an |x| histogram whose range grows by powers of two (one pass)."""
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN propagates through min/max; +-inf shows up directly
            raise ValueError("non-finite")
        self.rmin, self.rmax = min(self.rmin, lo), max(self.rmax, hi)
        self.count += x.size
        absmax = max(abs(lo), abs(hi))
        if self.hist is None:
            self.hist = np.zeros(bins, np.int64)
        if absmax > self.edge:
            self._grow(absmax)
        if self.edge <= 0:  # all zeros so far
            self.hist[0] += x.size
            return
        a = x.reshape(-1).astype(np.float32, copy=True)
        if lo < 0:
            np.abs(a, out=a)
        a *= np.float32(bins / self.edge)
        np.minimum(a, bins - 1, out=a)
        self.hist += np.bincount(a.astype(np.intp), minlength=bins)

    def _grow(self, absmax: float) -> None:
        if self.edge <= 0:
            self.edge = absmax
            return
        bins = self.hist.size
        factor = 1 << int(np.ceil(np.log2(absmax / self.edge)))
        while self.edge * factor < absmax:  # float rounding of log2
            factor <<= 1
        merged = np.zeros(bins, np.int64)
        if factor >= bins:
            merged[0] = self.hist.sum()
        else:
            merged[: bins // factor] = self.hist.reshape(bins // factor, factor).sum(axis=1)
        self.hist, self.edge = merged, self.edge * factor

    def trim(self) -> None:
        """Drop trailing empty bins (the histogram then covers [0, ~max|x|])."""
        if self.hist is None or self.edge <= 0:
            return
        nz = np.flatnonzero(self.hist)
        last = int(nz[-1]) + 1 if nz.size else 1
        self.edge = self.edge * last / self.hist.size
        self.hist = self.hist[:last].copy()

    def update_hist(self, x: np.ndarray) -> None:
        if self.hist is None or x.size == 0 or self.edge <= 0:
            return
        bins = self.hist.size
        idx = np.abs(x.reshape(-1)) * np.float32(bins / self.edge)
        idx = np.minimum(idx.astype(np.int64), bins - 1)
        self.hist += np.bincount(idx, minlength=bins)


@dataclass
class Collector:
    """Collects :class:`TensorStats` for a set of tensors from batches of ``{tensor: array}``."""

    names: list[str]
    num_bins: int = 0  # 0: min/max only
    stats: dict[str, TensorStats] = field(default_factory=dict)

    def __post_init__(self):
        self.stats = {n: TensorStats() for n in self.names}

    def minmax_pass(self, batches: Iterable[dict[str, np.ndarray]]) -> int:
        seen = 0
        for outputs in batches:
            seen += 1
            for name in self.names:
                s = self.stats[name]
                s.update_minmax(outputs[name])
                if not (np.isfinite(s.rmin) and np.isfinite(s.rmax)) and s.count:  # NaN propagates through min/max
                    raise NonFiniteDataError(
                        f"tensor '{name}' has non-finite values on the calibration data",
                        hint="check the calibration data and the model (NaN/Inf appear in this activation)")
        return seen

    def collect(self, batches: Iterable[dict[str, np.ndarray]]) -> int:
        """One pass: min/max, and (num_bins > 0) adaptive histograms with 2 x num_bins bins. Returns batches seen."""
        if not self.num_bins:
            return self.minmax_pass(batches)
        seen = 0
        for outputs in batches:
            seen += 1
            for name in self.names:
                try:
                    self.stats[name].update_adaptive(outputs[name], 2 * self.num_bins)
                except ValueError:
                    raise NonFiniteDataError(
                        f"tensor '{name}' has non-finite values on the calibration data",
                        hint="check the calibration data and the model (NaN/Inf appear in this activation)") from None
        for s in self.stats.values():
            s.trim()
        return seen

    def histogram_pass(self, batches: Iterable[dict[str, np.ndarray]]) -> None:
        for s in self.stats.values():
            s.edge = max(abs(s.rmin), abs(s.rmax))
            s.hist = np.zeros(self.num_bins, np.int64)
        for outputs in batches:
            for name in self.names:
                self.stats[name].update_hist(outputs[name])


def iter_outputs(session, feeds: Iterator[dict[str, np.ndarray]], names: list[str]) -> Iterator[dict[str, np.ndarray]]:
    for batch in feeds:
        yield dict(zip(names, session.run(names, batch)))


# --- range from statistics -------------------------------------------------------------------------------------
def compute_range(s: TensorStats, method: str, *, percentile: float = 99.999, levels: int = 255) -> tuple[float, float]:
    """(min, max) for one tensor; histogram methods clip |x| at a threshold t: [max(min, -t), min(max, t)]."""
    if method == "minmax" or s.hist is None or s.edge <= 0 or s.hist.sum() == 0:
        return s.rmin, s.rmax
    if method == "percentile":
        t = _percentile_threshold(s.hist, s.edge, percentile)
    elif method == "entropy":
        t = _entropy_threshold(s.hist, s.edge)
    else:
        t = _mse_threshold(s.hist, s.edge, levels, s.rmin >= 0)
    return max(s.rmin, -t), min(s.rmax, t)


def _percentile_threshold(hist: np.ndarray, edge: float, percentile: float) -> float:
    cdf = np.cumsum(hist) / hist.sum()
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return (min(i, hist.size - 1) + 1) * edge / hist.size


def _mse_threshold(hist: np.ndarray, edge: float, levels: int, one_sided: bool) -> float:
    """The clip threshold t minimizing expected squared error: clipping above t, rounding (step^2/12) below it."""
    bins = hist.size
    centers = (np.arange(bins) + 0.5) * edge / bins
    counts = hist.astype(np.float64)
    best, best_t = np.inf, edge
    steps = levels if one_sided else levels / 2
    for k in range(max(bins // 64, 1), bins + 1, max(bins // 256, 1)):
        t = k * edge / bins
        step = t / steps
        clip_err = np.sum(counts[k:] * (centers[k:] - t) ** 2)
        round_err = counts[:k].sum() * step * step / 12.0
        err = clip_err + round_err
        if err < best:
            best, best_t = err, t
    return float(best_t)


def _entropy_threshold(hist: np.ndarray, edge: float, target_bins: int = 128) -> float:
    """TensorRT-style KL calibration: the threshold whose 128-level quantized distribution is closest to |x|'s.

    Group sums come from prefix sums (O(target_bins) per candidate), so one candidate costs a few O(k) vector ops."""
    bins = hist.size
    counts = hist.astype(np.float64)
    counts[0] = 0.0  # exact zeros (ReLU outputs, padding) carry no range information and swamp the divergence
    total = counts.sum()
    if total == 0:
        return float(edge)
    nonzero = counts > 0
    cs = np.concatenate([[0.0], np.cumsum(counts)])
    cnz = np.concatenate([[0], np.cumsum(nonzero)])
    levels = np.arange(target_bins)
    best, best_k = np.inf, bins
    step = max((bins - target_bins) // 128, 1)
    for k in range(target_bins, bins + 1, step):
        starts = (levels * k) // target_bins
        ends = np.append(starts[1:], k)
        kl = _kl_to_quantized(counts, nonzero, cs, cnz, starts, ends, total)
        if kl < best:
            best, best_k = kl, k
    return float(best_k * edge / bins)


def _kl_to_quantized(counts, nonzero, cs, cnz, starts, ends, total: float) -> float:
    """KL(p || q) for the clip at bin k = ends[-1]: p is |x|'s histogram with the tail folded into bin k-1; q is
    counts[:k] merged into ``len(starts)`` levels and spread back over each level's non-empty bins (TensorRT)."""
    k = int(ends[-1])
    qsum = cs[k]  # the sum of q equals the sum of counts[:k]
    if qsum <= 0:
        return float("inf")
    nz = cnz[ends] - cnz[starts]
    per = (cs[ends] - cs[starts]) / np.maximum(nz, 1)
    q = np.repeat(per, ends - starts)
    p = counts[:k].copy()
    p[k - 1] += total - cs[k]
    mask = p > 0
    q = np.where(nonzero[:k], q, 0.0)[mask] / qsum
    ps = p[mask] / total
    return float(np.sum(ps * np.log(ps / np.maximum(q, 1e-12))))
