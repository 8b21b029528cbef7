"""Streaming range collectors: min/max, and bounded histograms of |x| for percentile, entropy (KL) and MSE.

Memory is bounded by (number of calibrated tensors) x (number of bins): every batch is folded into the collectors
and dropped. Histogram calibrators take two passes over the data: the first finds each tensor's |x| maximum
(fixing the histogram's range), the second fills the histograms.
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
                x = outputs[name]
                if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
                    raise NonFiniteDataError(
                        f"tensor '{name}' has non-finite values on the calibration data",
                        hint="check the calibration data and the model (NaN/Inf appear in this activation)")
                self.stats[name].update_minmax(x)
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
    """TensorRT-style KL calibration: the threshold whose 128-level quantized distribution is closest to |x|'s."""
    bins = hist.size
    counts = hist.astype(np.float64)
    counts[0] = 0.0  # exact zeros (ReLU outputs, padding) carry no range information and swamp the divergence
    if counts.sum() == 0:
        return float(edge)
    best, best_k = np.inf, bins
    step = max((bins - target_bins) // 128, 1)
    for k in range(target_bins, bins + 1, step):
        p = counts[:k].copy()
        p[k - 1] += counts[k:].sum()
        kl = _kl_to_quantized(p, counts[:k], target_bins)
        if kl < best:
            best, best_k = kl, k
    return float(best_k * edge / bins)


def _kl_to_quantized(p: np.ndarray, ref: np.ndarray, target_bins: int) -> float:
    """KL(p || q): p is |x|'s histogram clipped at bin k (the tail folded into its last bin); q is the unclipped
    part merged into ``target_bins`` levels and spread back over its non-empty bins (TensorRT's calibration)."""
    k = p.size
    starts = (np.arange(target_bins) * k) // target_bins
    lengths = np.diff(np.append(starts, k))
    nonzero = (ref > 0).astype(np.float64)
    sums = np.add.reduceat(ref, starts)
    nz = np.add.reduceat(nonzero, starts)
    q = np.repeat(sums / np.maximum(nz, 1.0), lengths) * nonzero
    mask = p > 0
    if q.sum() <= 0:
        return float("inf")
    ps, qs = p[mask] / p.sum(), q[mask] / q.sum()
    return float(np.sum(ps * np.log(ps / np.maximum(qs, 1e-12))))
