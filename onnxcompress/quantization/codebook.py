"""Weight sharing numerics (numpy only): 1-D weighted k-means codebooks, ternary (TWN) and binary weights, and the
least-squares refit of the shared values against a layer's output.

Every function works on rows: ``w`` [G, n] is one group per row (G = 1 for a per-layer codebook, G = output
channels per channel), ``importance`` [G, n] weights each element's squared error (the input energy of the
element's input feature, 1 without calibration data). Results are (indices [G, n] int64, codebook [G, V] float32).
k-means is deterministic: the linear initialisation uses no randomness, k-means++ draws from a generator seeded
with the recipe seed; sums run over sorted values with cumulative sums (sequential, the same on every machine).
"""

from __future__ import annotations

import numpy as np

from onnxcompress.quantization.gptq import inverse_cholesky_upper, prepare_hessian


def _weighted_kmeans_row(values: np.ndarray, weights: np.ndarray, centroids: np.ndarray, iterations: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm in 1-D on one row: (sorted-order-free assignment, centroids)."""
    order = np.argsort(values, kind="stable")
    xs, ws = values[order], weights[order]
    cw = np.concatenate([[0.0], np.cumsum(ws)])
    cwx = np.concatenate([[0.0], np.cumsum(ws * xs)])
    c = np.sort(centroids.astype(np.float64))
    for _ in range(iterations):
        edges = np.searchsorted(xs, (c[1:] + c[:-1]) / 2, side="right")
        bounds = np.concatenate([[0], edges, [xs.size]])
        mass = cw[bounds[1:]] - cw[bounds[:-1]]
        total = cwx[bounds[1:]] - cwx[bounds[:-1]]
        new = np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), c)  # an empty cluster keeps its centroid
        if np.array_equal(new, c):
            break
        c = np.sort(new)
    edges = np.searchsorted(c[1:] + c[:-1], 2 * values, side="left")  # nearest centroid (ties to the lower)
    return edges.astype(np.int64), c


def _init(values: np.ndarray, weights: np.ndarray, k: int, method: str, rng: np.random.Generator) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if method == "linear" or hi <= lo:
        return np.linspace(lo, hi, k)
    chosen = [float(values[rng.choice(values.size, p=weights / weights.sum())])]
    for _ in range(1, k):  # k-means++: next centroid with probability ~ weight * squared distance
        d2 = np.min((values[:, None] - np.asarray(chosen)[None, :]) ** 2, axis=1) * weights
        chosen.append(float(values[rng.choice(values.size, p=d2 / d2.sum())]) if d2.sum() > 0 else hi)
    return np.asarray(chosen)


def kmeans_codebook(w: np.ndarray, importance: np.ndarray, bits: int, *, init: str = "linear", iterations: int = 25,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 2**bits-entry codebook per row of ``w`` [G, n] minimizing the importance-weighted squared error."""
    k = 1 << bits
    rng = np.random.default_rng(seed)
    g, n = w.shape
    indices = np.empty((g, n), np.int64)
    book = np.empty((g, k), np.float64)
    for r in range(g):
        values = w[r].astype(np.float64)
        weights = np.maximum(importance[r].astype(np.float64), 1e-12)
        c0 = _init(values, weights, k, init, rng)
        indices[r], book[r] = _weighted_kmeans_row(values, weights, c0, iterations)
    return indices, book.astype(np.float32)


def ternary(w: np.ndarray, importance: np.ndarray, threshold: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """TWN per row: t = sign(w) where |w| > threshold * mean|w|; the row's codebook [-a, 0, +a] with a the
    importance-weighted mean |w| over the nonzero t (the least-squares scale under a diagonal importance)."""
    w = w.astype(np.float64)
    delta = threshold * np.abs(w).mean(axis=1, keepdims=True)
    t = np.where(np.abs(w) > delta, np.sign(w), 0.0)
    a = _scale(w, t, importance)
    return (t + 1).astype(np.int64), np.stack([-a, np.zeros_like(a), a], axis=1).astype(np.float32)


def binary(w: np.ndarray, importance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary weights per row: t = sign(w) (0 -> +1) with the row's codebook [-a, +a]."""
    w = w.astype(np.float64)
    t = np.where(w < 0, -1.0, 1.0)
    a = _scale(w, t, importance)
    return (t > 0).astype(np.int64), np.stack([-a, a], axis=1).astype(np.float32)


def _scale(w: np.ndarray, t: np.ndarray, importance: np.ndarray) -> np.ndarray:
    """argmin_a sum importance * (w - a t)^2 per row."""
    num = (importance * w * t).sum(axis=1)
    den = (importance * t * t).sum(axis=1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def decode(indices: np.ndarray, book: np.ndarray) -> np.ndarray:
    """The shared weight rows: book[g, indices[g, j]]."""
    return np.take_along_axis(book.astype(np.float32), indices, axis=1)


def refit_least_squares(w: np.ndarray, assign: np.ndarray, book: np.ndarray, gram: np.ndarray, *,
                        per_column: bool, ridge: float = 1e-6) -> np.ndarray:
    """Centroids refit so the layer's output on the calibration inputs matches the float layer's.

    ``w`` is the (K, N) weight of ``y = x @ w``, ``assign`` (K, N) the centroid of each element, ``gram`` = X^T X
    (K, K); ``book`` is [N, V] (``per_column``: one codebook per output column) or [1, V]. With the assignments
    fixed the weight is linear in the centroids, so minimizing tr(dW^T H dW) is a small least-squares problem per
    codebook: A c = b, A_uv = sum_n m_u[:, n]^T H m_v[:, n], b_u = sum_n m_u[:, n]^T H w[:, n] (m_v the mask of
    centroid v). Unused centroids keep their value; a tiny ridge keeps A invertible."""
    v = book.shape[1]
    hw = gram @ w.astype(np.float64)
    masks = [(assign == j).astype(np.float64) for j in range(v)]
    a = np.zeros((w.shape[1], v, v))
    b = np.zeros((w.shape[1], v))
    for j, mask in enumerate(masks):
        if not mask.any():
            continue
        hm = gram @ mask
        b[:, j] = (mask * hw).sum(axis=0)
        for i, other in enumerate(masks):
            a[:, i, j] = (other * hm).sum(axis=0)
    if not per_column:
        a, b = a.sum(axis=0, keepdims=True), b.sum(axis=0, keepdims=True)
    out = book.astype(np.float64).copy()
    for g in range(out.shape[0]):
        used = np.flatnonzero(np.diag(a[g]) > 0)
        if used.size == 0:
            continue
        rest = np.setdiff1d(np.arange(v), used)
        sub = a[g][np.ix_(used, used)]
        sub = sub + ridge * max(float(np.trace(sub)) / used.size, 1e-30) * np.eye(used.size)
        rhs = b[g][used] - a[g][np.ix_(used, rest)] @ out[g][rest]
        out[g, used] = np.linalg.solve(sub, rhs)
    return out.astype(np.float32)


def refit_scale(w: np.ndarray, signs: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """Per output column n of ``y = x @ w``: the scale a minimizing ||X (w_n - a t_n)||^2, i.e.
    a = t^T H w / t^T H t (``signs`` (K, N) in {-1, 0, 1})."""
    t = signs.astype(np.float64)
    ht = gram @ t
    num = (ht * w.astype(np.float64)).sum(axis=0)
    den = (ht * t).sum(axis=0)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def nearest(values: np.ndarray, book: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of ``book`` [N, V] for each value of ``values`` [N] (per column)."""
    return np.abs(values[:, None] - book).argmin(axis=1)


def error_feedback_assign(w: np.ndarray, book: np.ndarray, gram: np.ndarray, damp: float = 0.01, lazy: int = 128
                          ) -> np.ndarray:
    """Assignments (K, N) of a (K, N) weight to per-column codebooks ``book`` [N, V] chosen GPTQ-style: rows are
    rounded to their nearest entries in order and each row's error is spread over the rows not yet rounded with
    the upper Cholesky factor of (X^T X)^-1, so the layer's output error, not the weight error, is minimized."""
    h, work = prepare_hessian(gram, w, damp)
    u = inverse_cholesky_upper(h)
    k = w.shape[0]
    assign = np.empty(w.shape, np.int64)
    book64 = book.astype(np.float64)
    cols = np.arange(w.shape[1])
    for start in range(0, k, lazy):
        stop = min(start + lazy, k)
        errors = np.empty((stop - start, w.shape[1]))
        for i in range(start, stop):
            assign[i] = nearest(work[i], book64)
            err = (work[i] - book64[cols, assign[i]]) / u[i, i]
            work[i + 1:stop] -= np.outer(u[i, i + 1:stop], err)
            errors[i - start] = err
        if stop < k:
            work[stop:] -= u[start:stop, stop:].T @ errors
    return assign
