"""GPTQ-style second-order rounding of a (K, N) weight, block-wise along K (numpy only).

For a layer ``Y = X W`` the quantization error of the output on the calibration inputs is
``tr(dW^T H dW)`` with ``H = X^T X``. GPTQ (Frantar et al., 2022) quantizes the rows of W (the input features)
one at a time and spreads each row's rounding error over the rows not yet quantized, using the upper Cholesky
factor ``U`` of ``H^-1``: with ``e = (w_i - q_i) / U_ii``, ``W[j] -= U_ij e`` for j > i. The scale and zero point
of each quantization block are taken from the block's rows as they are when the block starts (after the updates
from earlier blocks), so the layout is exactly the block-wise one of :mod:`blockwise`. Dead inputs (``H_ii = 0``)
get weight 0; ``damp`` adds ``damp * mean(diag H)`` to the diagonal (numerical stability, as in the paper).

The Hessian comes from the float model's activations on the calibration data (not from the partly quantized
model, as the sequential variant of the paper does); this keeps every layer independent.
"""

from __future__ import annotations

import numpy as np

from onnxcompress.quantization.blockwise import BlockQuantized, block_params, quantize_rows


def inverse_cholesky_upper(h: np.ndarray) -> np.ndarray:
    """Upper-triangular U with U^T U = H^-1 (H symmetric positive definite)."""
    lower = np.linalg.cholesky(h)
    eye = np.eye(h.shape[0])
    inv_lower = np.linalg.solve(lower, eye)  # L^-1
    h_inv = inv_lower.T @ inv_lower
    h_inv = (h_inv + h_inv.T) / 2
    return np.linalg.cholesky(h_inv).T


def prepare_hessian(h: np.ndarray, w: np.ndarray, damp: float) -> tuple[np.ndarray, np.ndarray]:
    """(dampened H, W with dead input rows zeroed)."""
    h = np.array(h, dtype=np.float64)
    w = np.array(w, dtype=np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    w[dead, :] = 0.0
    mean_diag = float(np.mean(np.diag(h)))
    h[np.diag_indices_from(h)] += damp * (mean_diag if mean_diag > 0 else 1.0)
    return h, w


def gptq(w: np.ndarray, h: np.ndarray, bits: int, block_size: int, symmetric: bool = False,
         damp: float = 0.01) -> BlockQuantized:
    """Block-wise codes of ``w`` (K, N) chosen by second-order error feedback with the Gram matrix ``h`` (K, K)."""
    k, n = w.shape
    if h.shape != (k, k):
        raise ValueError(f"Hessian of shape {h.shape} does not match a weight with K={k}")
    h, work = prepare_hessian(h, w, damp)
    try:
        u = inverse_cholesky_upper(h)
    except np.linalg.LinAlgError:  # not positive definite even after damping: more damping
        h[np.diag_indices_from(h)] += 10 * damp * float(np.mean(np.diag(h)))
        u = inverse_cholesky_upper(h)
    kb = -(-k // block_size)
    codes = np.empty((kb * block_size, n), np.uint8)
    scales = np.empty((kb, n), np.float32)
    zeros = np.empty((kb, n), np.uint8)
    for b in range(kb):
        start, stop = b * block_size, min((b + 1) * block_size, k)
        scale, zero = block_params(work[start:stop][None], bits, symmetric)
        scales[b], zeros[b] = scale[0], zero[0]
        errors = _quantize_block(work, u, start, stop, scale[0], zero[0], bits, codes)
        if stop < k:  # the block's errors, spread over every later row at once
            work[stop:] -= u[start:stop, stop:].T @ errors
        codes[stop:(b + 1) * block_size] = zero[0][None, :]  # padding of a short last block
    return BlockQuantized(codes, scales, zeros, bits, block_size, k)


def _quantize_block(work: np.ndarray, u: np.ndarray, start: int, stop: int, scale: np.ndarray, zero: np.ndarray,
                    bits: int, codes: np.ndarray) -> np.ndarray:
    """Quantize rows [start, stop) in order, updating the later rows of the block; returns the scaled errors."""
    errors = np.empty((stop - start, work.shape[1]))
    s64, z64 = scale.astype(np.float64), zero.astype(np.float64)
    for i in range(start, stop):
        q = quantize_rows(work[i], scale, zero, bits)
        codes[i] = q
        err = (work[i] - (q.astype(np.float64) - z64) * s64) / u[i, i]
        work[i + 1:stop] -= np.outer(u[i, i + 1:stop], err)
        errors[i - start] = err
    return errors
