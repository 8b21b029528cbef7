"""Typed records of weight compression (weight-only INT4/INT8, codebooks, ternary/binary): what each layer became
and what it costs, for the report and the search."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def _num(v: float | None) -> float | str | None:
    if v is None:
        return None
    return round(v, 4) if math.isfinite(v) else ("inf" if v > 0 else "-inf")


@dataclass(frozen=True)
class CompressedWeight:
    """One layer's weight after compression. ``output_sqnr_db``: SQNR of the layer's output on the calibration
    inputs (from X^T X; None without calibration data or for embeddings); ``weight_sqnr_db``: of the weight."""

    node: str
    op: str
    tensor: str
    shape: tuple[int, ...]
    format: str  # e.g. "MatMulNBits int4 block 32", "codebook 4-bit per layer", "ternary per channel"
    bits: int
    method: str
    bytes_before: int
    bytes_after: int
    weight_sqnr_db: float
    output_sqnr_db: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "tensor": self.tensor, "shape": list(self.shape),
                "format": self.format, "bits": self.bits, "method": self.method,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "weight_sqnr_db": _num(self.weight_sqnr_db), "output_sqnr_db": _num(self.output_sqnr_db)}


@dataclass(frozen=True)
class WeightCompression:
    """What a weight-compression pass did: the mode, every compressed layer and the nodes left float."""

    mode: str
    layers: tuple[CompressedWeight, ...]
    skipped: tuple[tuple[str, str], ...]  # (node, reason)
    bytes_before: int  # every constant tensor of the graph, before and after
    bytes_after: int
    data: str | None = None  # the calibration data used (None: data-free)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "layers": [layer.to_dict() for layer in self.layers],
                "skipped": [{"node": n, "reason": r} for n, r in self.skipped],
                "constant_bytes": {"before": self.bytes_before, "after": self.bytes_after}, "data": self.data}
