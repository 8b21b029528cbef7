"""Scale/zero-point math (pure numpy): activations, int8 weights (per-tensor/per-channel) and int32 bias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT32_MAX = np.iinfo(np.int32).max
NP_DTYPES = {"uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16}
#: smallest scale we emit, so that a constant-zero tensor still gets a valid (positive) scale
MIN_SCALE = 1e-8


@dataclass(frozen=True)
class QParams:
    """Scale and zero point of one tensor (arrays of shape () or (C,) for per-channel) and the quantized dtype."""

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: str
    axis: int | None = None

    def key(self) -> tuple:
        return (self.dtype, self.axis, self.scale.tobytes(), self.zero_point.tobytes())


def qrange(dtype: str, symmetric: bool = False, reduce_range: bool = False) -> tuple[int, int]:
    info = np.iinfo(NP_DTYPES[dtype])
    lo, hi = int(info.min), int(info.max)
    if reduce_range:
        lo, hi = (lo // 2, hi // 2) if lo < 0 else (0, hi // 2)
    if symmetric and lo < 0:
        lo = -hi  # symmetric signed range: [-127, 127]
    return lo, hi


def activation_params(rmin: float, rmax: float, dtype: str, symmetric: bool) -> QParams:
    """Affine parameters covering [rmin, rmax] (always widened to include 0, so zero is exact)."""
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    lo, hi = qrange(dtype, symmetric)
    if symmetric:
        absmax = max(abs(rmin), abs(rmax))
        if lo < 0:
            scale = max(absmax / hi, MIN_SCALE)
            zp = 0
        else:  # symmetric in an unsigned type: zero sits in the middle
            scale = max(2 * absmax / (hi - lo), MIN_SCALE)
            zp = (hi + lo + 1) // 2
    else:
        scale = max((rmax - rmin) / (hi - lo), MIN_SCALE)
        zp = int(np.clip(np.round(lo - rmin / scale), lo, hi))
    return QParams(np.array(scale, np.float32), np.array(zp, NP_DTYPES[dtype]), dtype)


def weight_params(w: np.ndarray, axis: int | None, reduce_range: bool = False) -> QParams:
    """int8 symmetric parameters; per-channel along ``axis`` when given."""
    _, hi = qrange("int8", True, reduce_range)
    if axis is None:
        absmax = np.array(np.abs(w).max() if w.size else 0.0)
    else:
        absmax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    scale = np.asarray(np.maximum(absmax.astype(np.float64) / hi, MIN_SCALE), dtype=np.float32)
    return QParams(scale, np.zeros(scale.shape, np.int8), "int8", axis)


def quantize_array(x: np.ndarray, p: QParams, symmetric_weight: bool = False) -> np.ndarray:
    """round(x / scale) + zp, saturated to the dtype range (per-channel along ``p.axis``)."""
    lo, hi = qrange(p.dtype, symmetric_weight)
    scale, zp = _bcast(p.scale, x, p.axis), _bcast(p.zero_point, x, p.axis)
    q = np.round(x.astype(np.float64) / scale.astype(np.float64)) + zp.astype(np.float64)
    return np.clip(q, lo, hi).astype(NP_DTYPES[p.dtype])


def dequantize_array(q: np.ndarray, p: QParams) -> np.ndarray:
    scale, zp = _bcast(p.scale, q, p.axis), _bcast(p.zero_point, q, p.axis)
    return ((q.astype(np.float64) - zp.astype(np.float64)) * scale).astype(np.float32)


def fake_quantize(x: np.ndarray, p: QParams) -> np.ndarray:
    return dequantize_array(quantize_array(x, p), p)


def fit_weight_to_bias(wp: QParams, bias: np.ndarray, input_scale: float) -> tuple[QParams, int]:
    """Grow weight scales where the int32 bias at ``s_in * s_w`` would saturate; returns (params, channels grown)."""
    needed = np.abs(bias.astype(np.float64)) / (float(input_scale) * INT32_MAX * 0.999)  # float32 margin
    scale = np.broadcast_to(wp.scale, needed.shape).astype(np.float64) if wp.axis is not None else wp.scale
    grow = needed > scale
    if not np.any(grow):
        return wp, 0
    if wp.axis is None:
        new = np.array(max(float(scale), float(needed.max())), np.float32)
    else:
        new = np.where(grow, needed, scale).astype(np.float32)
    return QParams(new, wp.zero_point, wp.dtype, wp.axis), int(np.count_nonzero(grow))


def bias_params(input_scale: float, wp: QParams) -> QParams:
    scale = np.asarray(np.float64(input_scale) * wp.scale.astype(np.float64), dtype=np.float32)
    return QParams(scale, np.zeros(scale.shape, np.int32), "int32", 0 if wp.axis is not None else None)


def quantize_bias(bias: np.ndarray, p: QParams) -> np.ndarray:
    q = np.round(bias.astype(np.float64) / p.scale.astype(np.float64))
    return np.clip(q, -INT32_MAX, INT32_MAX).astype(np.int32)


def _bcast(v: np.ndarray, x: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None or v.ndim == 0:
        return v
    shape = [1] * x.ndim
    shape[axis] = -1
    return v.reshape(shape)
