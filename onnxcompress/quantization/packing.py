"""Bit packing of small unsigned codes into bytes (numpy only).

``pack_bits(codes, bits)`` packs the last axis, ``8 // bits`` codes per byte, the first code in the lowest bits
(the layout of MatMulNBits' B and zero points, of GatherBlockQuantized's packed uint8 data and of the codebook
indices of weight sharing). ``unpack_bits`` is its inverse; the decoders in the graph do the same arithmetic.
"""

from __future__ import annotations

import numpy as np

PACK_BITS = (1, 2, 4, 8)


def storage_bits(bits: int) -> int:
    """The packed width that holds ``bits``-bit codes: the smallest of 1, 2, 4, 8 that is >= bits."""
    if not 1 <= bits <= 8:
        raise ValueError(f"codes of {bits} bits cannot be packed into bytes")
    return next(b for b in PACK_BITS if b >= bits)


def packed_length(n: int, bits: int) -> int:
    """Bytes that hold ``n`` codes of ``bits`` bits (``bits`` in 1, 2, 4, 8)."""
    per = 8 // bits
    return -(-n // per)


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 array [..., packed_length(n, bits)] of the codes [..., n] (each < 2**bits); padding codes are 0."""
    if bits not in PACK_BITS:
        raise ValueError(f"pack_bits: bits must be one of {PACK_BITS}, got {bits}")
    codes = np.asarray(codes)
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << bits)):
        raise ValueError(f"codes out of range for {bits} bits")
    per = 8 // bits
    n = codes.shape[-1]
    padded = np.zeros((*codes.shape[:-1], packed_length(n, bits) * per), np.uint16)
    padded[..., :n] = codes
    out = np.zeros((*codes.shape[:-1], packed_length(n, bits)), np.uint16)
    for j in range(per):
        out |= padded[..., j::per] << (bits * j)
    return out.astype(np.uint8)


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The first ``n`` codes of each packed row (inverse of :func:`pack_bits`), as int64."""
    per = 8 // bits
    p = np.asarray(packed).astype(np.int64)
    shifts = bits * np.arange(per)
    codes = (p[..., None] >> shifts) & ((1 << bits) - 1)
    return codes.reshape(*p.shape[:-1], -1)[..., :n]
