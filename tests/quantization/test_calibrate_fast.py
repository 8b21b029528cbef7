"""The vectorized calibration kernels equal straightforward reference implementations (float rounding aside)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.quantization import calibrate as C


# --- references: written from the definitions, one candidate / one value at a time --------------------------------
def _reference_kl(counts: np.ndarray, k: int, levels: int = 128) -> float:
    """TensorRT's KL(p || q) for the clip at bin k, built explicitly (counts[0] already zeroed)."""
    total = counts.sum()
    p = counts[:k].copy()
    p[k - 1] += counts[k:].sum()
    q = np.zeros(k)
    for j in range(levels):
        lo, hi = j * k // levels, (j + 1) * k // levels
        seg = counts[lo:hi]
        if (seg > 0).any():
            q[lo:hi][seg > 0] = seg.sum() / (seg > 0).sum()
    if q.sum() <= 0:
        return float("inf")
    p, q = p / total, q / q.sum()
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))


def _reference_entropy_threshold(hist: np.ndarray, edge: float) -> tuple[float, list[float]]:
    """(threshold, every candidate's divergence): the first strict minimum over the candidate clip bins."""
    counts = hist.astype(np.float64)
    counts[0] = 0.0
    bins = hist.size
    if counts.sum() == 0:
        return float(edge), []
    best, best_k, kls = np.inf, bins, []
    for k in range(128, bins + 1, max((bins - 128) // 128, 1)):
        kls.append(_reference_kl(counts, k))
        if kls[-1] < best:
            best, best_k = kls[-1], k
    return float(best_k * edge / bins), kls


def _random_hist(rng: np.random.Generator, bins: int, kind: str) -> np.ndarray:
    if kind == "laplace":
        x = np.abs(rng.laplace(size=50_000))
    elif kind == "normal":
        x = np.abs(rng.standard_normal(50_000)) ** 1.5
    elif kind == "relu":  # a big exact-zero bin and a long tail
        x = np.concatenate([np.zeros(20_000), rng.exponential(size=30_000), [40.0]])
    else:  # "sparse": few distinct values, many empty bins (and empty quantization levels)
        x = rng.choice(rng.uniform(0, 5, 60), size=5_000) ** 2
    hist, _ = np.histogram(x, bins=bins, range=(0.0, float(x.max())))
    return hist.astype(np.int64)


CASES = [(bins, kind, seed) for bins, seed in ((129, 0), (600, 1), (2048, 2), (4096, 3))
         for kind in ("laplace", "normal", "relu", "sparse")]


@pytest.mark.parametrize("bins,kind,seed", CASES)
def test_entropy_threshold_equals_reference(bins, kind, seed):
    hist = _random_hist(np.random.default_rng(seed), bins, kind)
    counts = hist.astype(np.float64)
    counts[0] = 0.0
    ks = np.arange(128, bins + 1, max((bins - 128) // 128, 1))
    threshold, slow = _reference_entropy_threshold(hist, 7.5)
    np.testing.assert_allclose(C._kl_divergences(counts, ks, 128), slow, rtol=1e-9, atol=1e-12)  # every candidate
    assert C._entropy_threshold(hist, 7.5) == threshold


def test_entropy_threshold_degenerate_histograms():
    assert C._entropy_threshold(np.array([5, 3, 0, 1]), 2.0) == 2.0  # fewer bins than levels: no clipping
    assert C._entropy_threshold(np.r_[10, np.zeros(300, np.int64)], 3.0) == 3.0  # only exact zeros
    one = np.zeros(300, np.int64)
    one[299] = 4  # a single non-empty bin at the end: every candidate folds it into its last bin
    assert C._entropy_threshold(one, 3.0) == _reference_entropy_threshold(one, 3.0)[0]


# --- histogram update --------------------------------------------------------------------------------------------
def _reference_counts(x: np.ndarray, edge: float, bins: int) -> np.ndarray:
    """The clip-then-floor definition: min(floor(|x| * float32(bins / edge)), bins - 1), counted."""
    a = np.abs(x.reshape(-1).astype(np.float32)) * np.float32(bins / edge)
    return np.bincount(np.minimum(a, bins - 1).astype(np.int64), minlength=bins)


@pytest.mark.parametrize("bins", [256, 4096, 70_000])  # 70_000: indices beyond uint16
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bin_counts_equal_clip_then_floor(monkeypatch, bins, dtype):
    monkeypatch.setattr(C, "CHUNK", 1000)  # several chunks, and a partial last one
    rng = np.random.default_rng(bins)
    x = (rng.standard_normal(4321) * 3).astype(dtype)
    edge = float(np.abs(x).max())  # the maximum lands exactly on the edge: folded into the last bin
    got = C._bin_counts(x.reshape(-1), bins / edge, bins, signed=True)
    np.testing.assert_array_equal(got, _reference_counts(x, edge, bins))
    pos = np.abs(x)
    np.testing.assert_array_equal(C._bin_counts(pos, bins / edge, bins, signed=False), got)


def test_collect_matches_two_pass_histogram_after_range_doubling():
    """One pass with range doubling (batches with growing maxima) keeps every value and the exact min/max."""
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((8, 50)).astype(np.float32) * s for s in (0.5, 1.0, 4.0, 2.0, 9.0)]
    c = C.Collector(["t"], 512)
    assert c.collect({"t": b} for b in batches) == 5
    s = c.stats["t"]
    everything = np.concatenate([b.reshape(-1) for b in batches])
    assert s.hist.sum() == everything.size and s.count == everything.size
    assert (s.rmin, s.rmax) == (float(everything.min()), float(everything.max()))
    assert s.edge >= float(np.abs(everything).max()) and s.hist[-1] > 0  # trimmed: the last bin holds the max
    # the reference histogram on the final edge, summed onto the collector's bins, equals it
    ref = _reference_counts(everything, s.edge, s.hist.size)
    assert np.abs(ref.astype(np.int64) - s.hist).sum() <= 2 * len(batches)  # float rounding at merged bin edges


def test_tiny_range_does_not_overflow():
    c = C.Collector(["t"], 128)
    c.collect([{"t": np.array([1e-40, -3e-40, 0.0, 2e-41], np.float32)}])
    s = c.stats["t"]
    assert s.hist.sum() == 4 and np.isfinite(s.edge) and s.edge > 0
    lo, hi = C.compute_range(s, "entropy")
    assert lo == pytest.approx(-3e-40, rel=1e-5) and 0 < hi <= 3e-40
