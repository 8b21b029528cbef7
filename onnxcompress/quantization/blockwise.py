"""Block-wise weight quantization of a (K, N) matrix along K (numpy only): round-to-nearest and the layouts
onnxruntime reads.

A block is ``block_size`` consecutive rows of one column; each block has its own float32 scale and unsigned
zero point (``2**(bits-1)`` when symmetric), ``w ~ (q - zero) * scale`` with ``q`` in ``[0, 2**bits - 1]``. The
asymmetric range always contains 0, so zero weights and constant blocks are exact. A last, shorter block (K not a
multiple of the block size) is padded with the zero point (it dequantizes to 0 and multiplies nothing).
Everything here is elementwise float arithmetic, so the codes do not depend on the machine that computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxcompress.quantization.packing import pack_bits


@dataclass(frozen=True)
class BlockQuantized:
    """Codes [kb * block, N] (uint8), scales and zero points [kb, N] of a (K, N) weight."""

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    block_size: int
    k: int

    @property
    def blocks(self) -> int:
        return self.scales.shape[0]

    def dequantize(self) -> np.ndarray:
        """The float32 (K, N) weight the runtime computes with."""
        q = self.codes.reshape(self.blocks, self.block_size, -1).astype(np.float32)
        w = (q - self.zeros[:, None, :].astype(np.float32)) * self.scales[:, None, :]
        return w.reshape(-1, w.shape[-1])[: self.k]

    # --- the layouts onnxruntime reads ------------------------------------------------------------------------
    def matmulnbits_b(self) -> np.ndarray:
        """MatMulNBits' B: uint8 [N, kb, block_size * bits / 8]."""
        q = self.codes.reshape(self.blocks, self.block_size, -1).transpose(2, 0, 1)
        return pack_bits(q, self.bits)

    def matmulnbits_zeros(self) -> np.ndarray:
        """MatMulNBits' zero points: uint8 [N, ceil(kb * bits / 8)], packed along the blocks."""
        return pack_bits(self.zeros.T, self.bits)

    def matmulnbits_scales(self) -> np.ndarray:
        return np.ascontiguousarray(self.scales.T)  # [N, kb]

    def nbytes(self, with_zeros: bool = True) -> int:
        """Stored bytes: packed codes + float32 scales (+ packed zero points)."""
        n = self.scales.shape[1]
        codes = n * self.blocks * self.block_size * self.bits // 8
        zeros = n * (-(-self.blocks * self.bits // 8)) if with_zeros else 0
        return codes + self.scales.nbytes + zeros


def block_view(w: np.ndarray, block_size: int) -> np.ndarray:
    """(K, N) -> [kb, block_size, N] float64, the last block padded with NaN (ignored by the range)."""
    k, n = w.shape
    kb = -(-k // block_size)
    padded = np.full((kb * block_size, n), np.nan)
    padded[:k] = w
    return padded.reshape(kb, block_size, n)


def block_params(blocks: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """(float32 scales, uint8 zero points) per block and column of ``blocks`` [kb, bs, N] (NaN = padding)."""
    qmax = (1 << bits) - 1
    lo = np.minimum(np.nanmin(blocks, axis=1), 0.0)
    hi = np.maximum(np.nanmax(blocks, axis=1), 0.0)
    if symmetric:
        half = 1 << (bits - 1)
        amax = np.maximum(-lo, hi)
        scale = amax / (half - 1)
        zero = np.full(scale.shape, half, np.uint8)
    else:
        scale = (hi - lo) / qmax
        zero = None
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    if zero is None:
        zero = np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax).astype(np.uint8)
    return scale, zero


def quantize_rows(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """Round-to-nearest codes of rows ``w`` [..., N] with per-column ``scale``/``zero`` [N]."""
    qmax = (1 << bits) - 1
    q = np.rint(w / scale.astype(np.float64)) + zero.astype(np.float64)
    return np.clip(q, 0, qmax).astype(np.uint8)


def rtn(w: np.ndarray, bits: int, block_size: int, symmetric: bool = False) -> BlockQuantized:
    """Round-to-nearest block quantization of a (K, N) weight along K."""
    w = np.asarray(w, dtype=np.float64)
    blocks = block_view(w, block_size)
    scale, zero = block_params(blocks, bits, symmetric)
    filled = np.where(np.isnan(blocks), 0.0, blocks)  # padding rows quantize to the zero point exactly
    codes = quantize_rows(filled, scale[:, None, :], zero[:, None, :], bits)
    return BlockQuantized(codes.reshape(-1, w.shape[1]), scale, zero, bits, block_size, w.shape[0])


def weight_sqnr_db(w: np.ndarray, w_hat: np.ndarray, h: np.ndarray | None = None) -> float:
    """10 log10(signal / noise) of a weight approximation; with the input Gram matrix ``h`` = X^T X, of the
    layer's output on the calibration inputs (tr(W^T H W) / tr(dW^T H dW))."""
    w = np.asarray(w, np.float64)
    d = w - np.asarray(w_hat, np.float64)
    if h is None:
        signal, noise = float((w * w).sum()), float((d * d).sum())
    else:
        signal, noise = float(np.einsum("kn,kn->", w, h @ w)), float(np.einsum("kn,kn->", d, h @ d))
    if noise <= 0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-300) / noise))
