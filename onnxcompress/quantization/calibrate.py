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
CHUNK = 1 << 18  # values per histogram step: bounds the temporaries (~3.5 MB)


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
        flat = x.reshape(-1)
        lo, hi = float(flat.min()), float(flat.max())
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
        self.hist += _bin_counts(flat, bins / self.edge, bins, signed=lo < 0)

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


def _bin_counts(flat: np.ndarray, scale: float, bins: int, signed: bool) -> np.ndarray:
    """Counts of floor(|x| * scale) clamped to bins - 1, for |x| <= bins / scale.

    Per chunk of ``CHUNK`` values: scale, |.|, to int, bincount; the temporaries stay bounded (and cache-sized)
    whatever the tensor's size. floor(|x| * scale) <= bins (float32 rounding adds < 1 below 2**23), so the clamp is
    a fold of bin ``bins`` into ``bins - 1`` instead of a pass over the data: the counts equal clip-then-floor.
    Indices are uint16 where they fit (numpy's bincount is fastest on uint16; int32/uint32 are 2-3x slower).
    float32 arithmetic, unless bins / edge overflows it (a denormal-sized range): then float64."""
    itype = np.uint16 if bins < 65535 else np.intp
    ftype = np.float32 if scale < float(np.finfo(np.float32).max) else np.float64
    scale = ftype(scale)
    counts = np.zeros(bins + 1, np.int64)
    for i in range(0, flat.size, CHUNK):
        a = np.multiply(flat[i:i + CHUNK], scale, dtype=ftype)
        if signed:
            np.abs(a, out=a)
        counts += np.bincount(a.astype(itype), minlength=bins + 1)
    counts[bins - 1] += counts[bins]
    return counts[:bins]


@dataclass
class Collector:
    """Collects :class:`TensorStats` for a set of tensors from batches of ``{tensor: array}``.

    ``num_bins`` 0 keeps min/max only, except for the tensors in ``histograms`` (the graph inputs: the data itself),
    which always get a histogram so that :func:`sanity_warnings` can tell outliers from a real range."""

    names: list[str]
    num_bins: int = 0  # 0: min/max only
    stats: dict[str, TensorStats] = field(default_factory=dict)
    histograms: frozenset[str] = frozenset()

    def __post_init__(self):
        self.stats = {n: TensorStats() for n in self.names}

    def minmax_pass(self, batches: Iterable[dict[str, np.ndarray]]) -> int:
        seen = 0
        for outputs in batches:
            seen += 1
            for name in self.names:
                if name not in outputs:  # not computed in this batch (a subgraph branch it did not take)
                    continue
                s = self.stats[name]
                s.update_minmax(outputs[name])
                if not (np.isfinite(s.rmin) and np.isfinite(s.rmax)) and s.count:  # NaN propagates through min/max
                    raise NonFiniteDataError(
                        f"tensor '{name}' has non-finite values on the calibration data",
                        hint="check the calibration data and the model (NaN/Inf appear in this activation)")
        return seen

    def collect(self, batches: Iterable[dict[str, np.ndarray]]) -> int:
        """One pass: min/max, and (num_bins > 0) adaptive histograms with 2 x num_bins bins. Returns batches seen."""
        if not self.num_bins and not self.histograms:
            return self.minmax_pass(batches)
        seen = 0
        bins = 2 * (self.num_bins or SANITY_BINS)
        for outputs in batches:
            seen += 1
            for name in self.names:
                if name not in outputs:
                    continue
                if not self.num_bins and name not in self.histograms:
                    self._minmax(name, outputs[name])
                    continue
                try:
                    self.stats[name].update_adaptive(outputs[name], bins)
                except ValueError:
                    raise NonFiniteDataError(
                        f"tensor '{name}' has non-finite values on the calibration data",
                        hint="check the calibration data and the model (NaN/Inf appear in this activation)") from None
        for s in self.stats.values():
            s.trim()
        return seen

    def _minmax(self, name: str, x: np.ndarray) -> None:
        s = self.stats[name]
        s.update_minmax(x)
        if not (np.isfinite(s.rmin) and np.isfinite(s.rmax)) and s.count:
            raise NonFiniteDataError(f"tensor '{name}' has non-finite values on the calibration data",
                                     hint="check the calibration data and the model (NaN/Inf appear in this activation)")

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


# --- sanity of the calibration data ---------------------------------------------------------------------------
SANITY_BINS = 2048
#: max |x| this many times the 99.99th percentile of |x| means a handful of values set the whole range
OUTLIER_RATIO = 256.0


def sanity_warnings(stats: dict[str, TensorStats], names: Iterable[str]) -> list[str]:
    """Warnings about the calibration data of ``names`` (graph inputs): constant inputs and ranges that a few
    extreme values stretch (their int8 steps would round every ordinary value to the same level)."""
    out = []
    for name in names:
        s = stats.get(name)
        if s is None or not s.count:
            continue
        if s.rmax == s.rmin:
            out.append(f"input '{name}' is constant ({s.rmin:g}) over the calibration data: its quantization range "
                       "is degenerate and says nothing about real inputs (give real calibration samples)")
            continue
        if s.hist is None or s.edge <= 0:
            continue
        p = _percentile_threshold(s.hist, s.edge, 99.99)
        amax = max(abs(s.rmin), abs(s.rmax))
        if p > 0 and amax / p > OUTLIER_RATIO:
            out.append(f"input '{name}': max |x| = {amax:.3g} is {amax / p:.0f}x its 99.99th percentile ({p:.3g}); "
                       "a few extreme values set the quantization range, so ordinary values lose their resolution "
                       "(clean the calibration data, or set a range override for this input)")
    return out


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

    Candidates: every ``(bins - 128) // 128``-th bin from 128 (about 129). All are scored at once from prefix sums
    (O(candidates x target_bins), see :func:`_kl_divergences`); the first minimum wins."""
    bins = hist.size
    counts = hist.astype(np.float64)
    counts[0] = 0.0  # exact zeros (ReLU outputs, padding) carry no range information and swamp the divergence
    if counts.sum() == 0:
        return float(edge)
    ks = np.arange(target_bins, bins + 1, max((bins - target_bins) // 128, 1))
    kl = _kl_divergences(counts, ks, target_bins) if ks.size else np.empty(0)
    if not np.isfinite(kl).any():  # fewer bins than levels, or nothing to score: no clipping
        return float(edge)
    return float(ks[int(np.argmin(kl))] * edge / bins)


def _kl_divergences(counts: np.ndarray, ks: np.ndarray, target_bins: int) -> np.ndarray:
    """KL(p || q) for every clip bin k in ``ks``, where p is |x|'s histogram ``counts[:k]`` with the tail folded
    into bin k-1, and q is ``counts[:k]`` merged into ``target_bins`` levels, spread evenly over each level's
    non-empty bins and normalized (TensorRT; q floored at 1e-12). Per candidate, with T the total and Q = sum(q):
    ``sum_{i<k-1} p_i/T log((p_i/T) / q_i) = (C[k-1] - S[k-1] log T - sum_j S'_j L_j) / T`` where C, S are prefix
    sums of c log c and c, S'_j the level sums without bin k-1 and ``L_j = log(max(level_mean_j / Q, 1e-12))``;
    bin k-1 (which carries the tail) is added on its own. Returns inf where Q is 0."""
    total = counts.sum()
    cs = np.concatenate([[0.0], np.cumsum(counts)])
    cnz = np.concatenate([[0], np.cumsum(counts > 0)])
    clogc = np.concatenate([[0.0], np.cumsum(counts * np.log(np.where(counts > 0, counts, 1.0)))])
    starts = (np.arange(target_bins)[None, :] * ks[:, None]) // target_bins
    ends = np.concatenate([starts[:, 1:], ks[:, None]], axis=1)
    sums, nonempty = cs[ends] - cs[starts], cnz[ends] - cnz[starts]
    qsum = cs[ks]
    with np.errstate(divide="ignore", invalid="ignore"):
        logq = np.log(np.maximum(sums / np.maximum(nonempty, 1) / qsum[:, None], 1e-12))
        logq = np.where(sums > 0, logq, 0.0)
        last = counts[ks - 1]
        inner = clogc[ks - 1] - cs[ks - 1] * np.log(total) - (sums * logq).sum(axis=1) + last * logq[:, -1]
        p_last = (last + total - cs[ks]) / total
        q_last = np.where(last > 0, logq[:, -1], np.log(1e-12))
        tail = np.where(p_last > 0, p_last * (np.log(p_last) - q_last), 0.0)
        kl = inner / total + tail
    return np.where((qsum > 0) & np.isfinite(kl), kl, np.inf)
