"""PrecisionResult: what one fp16/bf16 conversion did and how it was checked (typed; ``to_dict`` is the report's
``precision`` section)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from onnxcompress.config import config_to_dict
from onnxcompress.precision.config import PrecisionConfig


@dataclass(frozen=True)
class OutputCheck:
    """One output of the converted model against the float32 model."""

    name: str
    cosine: float
    cosine_min: float | None
    top1_agreement: float | None  # only for class outputs [N, C]
    sqnr_db: float
    max_abs_error: float
    nonfinite: int  # NaN/Inf values in the converted model's output

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PrecisionCheck:
    """The fidelity floor: no NaN/Inf, mean cosine >= min_cosine on every output, top-1 agreement >=
    min_top1_agreement on the class output. ``emulated``: ``outputs`` were measured on the float32 twin that
    rounds every low-precision tensor (the CPU check; see precision.stage.EmulatedModel); ``runtime_outputs``:
    the written model itself run by onnxruntime on this machine (None where it cannot run: bf16 on CPU)."""

    passed: bool
    reasons: tuple[str, ...]
    data: str
    samples: int
    emulated: bool
    outputs: tuple[OutputCheck, ...]
    floor: dict[str, float]
    runtime_outputs: tuple[OutputCheck, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "data": self.data, "samples": self.samples,
                "emulated": self.emulated, "floor": dict(self.floor), "outputs": [o.to_dict() for o in self.outputs],
                "runtime_outputs": None if self.runtime_outputs is None else
                [o.to_dict() for o in self.runtime_outputs]}


@dataclass(frozen=True)
class PrecisionResult:
    config: PrecisionConfig
    low: tuple[str, ...]  # nodes computing in fp16/bf16
    kept: tuple[tuple[str, str, str], ...]  # (node, op, reason) kept float32
    blocked: dict[str, str]  # tensor -> why it must stay float32
    casts_inserted: int
    casts_removed: int
    initializers_converted: int
    initializers_duplicated: int
    bytes_before: dict[str, int]  # constant bytes per dtype
    bytes_after: dict[str, int]
    stats_data: str | None  # calibration data the statistics came from (None: static rules only)
    stats_samples: int = 0
    seconds: float = 0.0
    check: PrecisionCheck | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """False when the check ran and failed (NaN/Inf or below the floor)."""
        return self.check is None or self.check.passed

    def to_dict(self) -> dict[str, Any]:
        reasons = Counter(_family(r) for _, _, r in self.kept)
        return {
            "to": self.config.to, "config": config_to_dict(self.config),
            "nodes": {"low_precision": len(self.low), "kept_float32": len(self.kept)},
            "kept_float32": [{"node": n, "op": op, "reason": r} for n, op, r in self.kept],
            "kept_float32_reasons": dict(reasons.most_common()),
            "blocked_tensors": dict(self.blocked),
            "casts": {"inserted": self.casts_inserted, "removed": self.casts_removed},
            "initializers": {"converted": self.initializers_converted, "duplicated": self.initializers_duplicated},
            "constant_bytes": {"before": dict(self.bytes_before), "after": dict(self.bytes_after)},
            "statistics": {"data": self.stats_data, "samples": self.stats_samples},
            "check": None if self.check is None else self.check.to_dict(),
            "passed": self.passed, "seconds": round(self.seconds, 3), "warnings": list(self.warnings),
        }


def _family(reason: str) -> str:
    """The kind of a keep-float32 reason (for the summary counts)."""
    for key in ("no ", "keep_fp32", "quantized", "data movement", "reduces over", "accumulator", "dot product",
                "non-finite", "headroom", "round to 0"):
        if key in reason:
            return {"no ": "no rule", "headroom": "overflow", "round to 0": "underflow"}.get(key, key)
    return "other"
