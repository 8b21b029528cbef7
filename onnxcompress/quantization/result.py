"""QuantizeResult: what one quantization run did (typed; ``to_dict`` is the report's ``quantize`` section)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxcompress.config import config_to_dict
from onnxcompress.quantization.compressed import WeightCompression
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.correct_bias import BiasCorrection
from onnxcompress.quantization.placement import Placement
from onnxcompress.quantization.verify import KernelReport


@dataclass(frozen=True)
class QuantizedNode:
    node: str
    op: str
    kind: str  # the rule kind: compute | binary | unary | concat | passthrough | dynamic


@dataclass(frozen=True)
class TensorParams:
    """The calibrated range and the quantization parameters of one activation tensor."""

    range: tuple[float, float] | None
    shared_with: str | None
    scale: float
    zero_point: int
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"range": None if self.range is None else list(self.range), "shared_with": self.shared_with,
                "scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype}


@dataclass(frozen=True)
class SmoothQuantResult:
    alpha: float
    smoothed: int

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "smoothed": self.smoothed}


@dataclass(frozen=True)
class SearchSummary:
    """How an accuracy-aware search chose the precision plan: its goal, outcome and every trial (the same
    document as the search's trace file)."""

    metric: str
    max_drop: float
    data: str
    samples: int
    goal_met: bool
    stopped: str
    time_budget_s: float | None
    elapsed_s: float
    mode: str
    best: dict[str, Any] | None
    higher_precision: dict[str, str]
    trials: tuple[dict[str, Any], ...]
    sensitivity: dict[str, Any] | None = None
    final_build: tuple[dict[str, Any], ...] = ()  # pass records of the final (verified) build

    def to_dict(self) -> dict[str, Any]:
        return {"goal": {"metric": self.metric, "max_drop": self.max_drop, "data": self.data,
                         "samples": self.samples},
                "goal_met": self.goal_met, "stopped": self.stopped, "time_budget_s": self.time_budget_s,
                "elapsed_s": self.elapsed_s, "mode": self.mode, "best": self.best,
                "higher_precision": dict(self.higher_precision), "trials": list(self.trials),
                "sensitivity": self.sensitivity}


@dataclass(frozen=True)
class SelfCheckSummary:
    """quantize's check of its own result (tuning.selfcheck): every output's kind, metric and floor on held-out
    calibration samples, for the full INT8 plan (``baseline``) and the written model (``final``); whether the
    accuracy-aware search ran (then QuantizeResult.search holds its trials) and why it stopped."""

    passed: bool
    data: str
    samples: int
    in_sample: bool  # too few calibration samples to hold any out: checked on the calibration data itself
    kinds: dict[str, dict[str, Any]]  # output -> {kind, metric, reason, source, threshold}
    baseline: dict[str, dict[str, Any]]  # output -> {kind, metric, value, floor, floor_name, passed, ...}
    final: dict[str, dict[str, Any]]
    searched: bool
    stopped: str

    @property
    def failures(self) -> list[str]:
        return [_floor_text(name, c) for name, c in self.final.items() if not c["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "data": self.data, "samples": self.samples, "in_sample": self.in_sample,
                "kinds": dict(self.kinds), "baseline": dict(self.baseline), "final": dict(self.final),
                "searched": self.searched, "stopped": self.stopped}


def _floor_text(name: str, c: dict[str, Any]) -> str:
    word = (">=" if c["higher_is_better"] else "<=") if c["passed"] else ("<" if c["higher_is_better"] else ">")
    return f"{name} ({c['kind']}) {c['metric']} {c['value']:.4g} {word} {c['floor']:g}"


@dataclass(frozen=True)
class QuantizeResult:
    mode: str
    config: QuantizeConfig
    reduce_range: tuple[bool, str]  # (7-bit weights?, why)
    activation_dtype: str | None
    quantized: tuple[QuantizedNode, ...]
    skipped: tuple[tuple[str, str], ...]  # (node, reason)
    absorbed: tuple[tuple[str, str], ...] = ()  # (Relu/Clip node, producer it was absorbed into)
    float_outputs: tuple[tuple[str, str], ...] = ()  # (node, output left float)
    tensors: dict[str, TensorParams] = field(default_factory=dict)
    weight_bytes: tuple[int, int] = (0, 0)  # constant-tensor bytes before, after
    seconds: float = 0.0
    verification: KernelReport | None = None
    kernel_ops: dict[str, int] | None = None  # dynamic mode: int8 op types in onnxruntime's optimized graph
    bias_correction: BiasCorrection | None = None
    smooth_quant: SmoothQuantResult | None = None
    search: SearchSummary | None = None
    warnings: tuple[str, ...] = ()
    weights: WeightCompression | None = None  # weight-compression modes: every layer's format, bytes and error
    placement: Placement | None = None  # latency-aware placement (None: fixed, or no cost model for the target)
    self_check: SelfCheckSummary | None = None

    @property
    def calibrator(self) -> str | None:
        return self.config.calibrator if self.mode == "static" else None

    @property
    def weight_bits(self) -> int:
        """Bits of the (int8) weights, or the weight-compression width (weight_only/codebook; 2 ternary, 1 binary)."""
        if self.mode in ("weight_only", "codebook"):
            return self.config.weight_bits
        return {"ternary": 2, "binary": 1}.get(self.mode, 7 if self.reduce_range[0] else 8)

    @property
    def coverage(self) -> float | None:
        """Fraction of the layers with constant weights that run as int8 kernels (the gate's coverage)."""
        v = self.verification
        if v is None or v.weighted_total == 0:
            return None  # nothing to measure: never reported as 100%
        return v.weighted_int8 / v.weighted_total

    @property
    def no_faster_plan(self) -> bool:
        """The placement found no INT8 plan faster than the float model: every node was kept float."""
        return self.placement is not None and not self.placement.faster

    @property
    def nothing_quantized(self) -> bool:
        return not any(q.kind != "passthrough" for q in self.quantized)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode, "config": config_to_dict(self.config), "calibrator": self.calibrator,
            "reduce_range": {"enabled": self.reduce_range[0], "reason": self.reduce_range[1]},
            "activation_dtype": self.activation_dtype,
            "quantized": [{"node": q.node, "op": q.op, "kind": q.kind} for q in self.quantized],
            "absorbed": [{"node": n, "into": p} for n, p in self.absorbed],
            "float_outputs": [{"node": n, "tensor": t} for n, t in self.float_outputs],
            "skipped": [{"node": n, "reason": r} for n, r in self.skipped],
            "tensors": {k: v.to_dict() for k, v in self.tensors.items()},
            "size": {"before_bytes": self.weight_bytes[0], "after_bytes": self.weight_bytes[1]},
            "seconds": round(self.seconds, 3),
        }
        if self.verification is not None:
            v = self.verification.to_dict()
            out.update(verification=v, int8_kernels=v["int8_kernels"], float_nodes=v["float_nodes"],
                       coverage=v["coverage"], weighted_coverage=self.coverage)
        if self.kernel_ops is not None:
            out["kernel_ops"] = dict(self.kernel_ops)
        if self.bias_correction is not None:
            out["bias_correction"] = self.bias_correction.to_dict()
        if self.smooth_quant is not None:
            out["smooth_quant"] = self.smooth_quant.to_dict()
        if self.search is not None:
            out["tune"] = self.search.to_dict()
        if self.weights is not None:
            out["weights"] = self.weights.to_dict()
        if self.placement is not None:
            out["placement"] = self.placement.to_dict()
        if self.self_check is not None:
            out["self_check"] = self.self_check.to_dict()
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def as_float(v: float | None) -> float | None:
    return None if v is None else float(np.float32(v))
