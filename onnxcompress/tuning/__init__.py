"""Accuracy-aware compression: sensitivity analysis and the mixed-precision search that never loses its best result.

``sensitivity_analysis(model, calib, quant, tune, ...)`` ranks quantizable nodes (one-pass SQNR proxy, then
full-model metrics for the top candidates) and, optionally, prunable channel groups.
:class:`TuneQuantizationPass` runs the search as the quantization stage; ``goal_from_policy`` derives its goal
from a gate's accuracy criterion (``optimize`` uses it when the gate has one).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from onnxcompress.data.inputs import load_input_data
from onnxcompress.data.labels import has_class_labels
from onnxcompress.errors import RecipeError
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.tuning.config import METRICS, PRECISIONS, SelfCheckConfig, TuneConfig
from onnxcompress.tuning.measure import Evaluator
from onnxcompress.tuning.search import MixedPrecisionSearch, tune_quantization
from onnxcompress.tuning.sensitivity import analyze, prune_sensitivity
from onnxcompress.tuning.stage import SearchFiles, TuneQuantizationPass
from onnxcompress.tuning.trials import TrialBuilder
from onnxcompress.validation.gate import GatePolicy

__all__ = ["METRICS", "PRECISIONS", "TuneConfig", "SelfCheckConfig", "MixedPrecisionSearch", "TuneQuantizationPass",
           "SearchFiles", "tune_quantization", "sensitivity_analysis", "resolve_metric", "goal_from_policy"]


def resolve_metric(metric: str, data, labels: str = "labels") -> str:
    """``auto``: top1 when the data has labels, else agreement."""
    if metric != "auto":
        return metric
    return "top1" if has_class_labels(data, labels) else "agreement"


def sensitivity_analysis(model, calib, quant: QuantizeConfig | None = None, tune: TuneConfig | None = None, *,
                         eval_data=None, prune_ratio: float = 0.0, progress=None) -> dict[str, Any]:
    """Ranked per-node quantization sensitivity (+ per-group pruning loss when ``prune_ratio`` > 0), JSON-ready.
    ``model`` is a pre-processed float model (the API runs the standard pre-processing first)."""


    if not 0.0 <= prune_ratio < 1.0:
        raise RecipeError(f"prune_ratio must be in [0, 1), got {prune_ratio}", hint="e.g. --prune-ratio 0.3")
    calib = load_input_data(calib)
    data = load_input_data(eval_data) if eval_data is not None else calib
    tune = tune or TuneConfig()
    tune = replace(tune, metric=resolve_metric(tune.metric, data, tune.labels))
    builder = TrialBuilder(model, calib, quant or QuantizeConfig())
    note = "evaluation data" if eval_data is not None else "calibration data (no --eval given)"
    evaluator = Evaluator(model, data, tune, note)
    result = analyze(builder, evaluator, tune, progress=progress)
    result.update(mode=builder.mode, data=note, samples=evaluator.samples)
    if prune_ratio > 0:
        result["prune"] = prune_sensitivity(builder.model, calib, evaluator, prune_ratio)
    return result


def goal_from_policy(policy: GatePolicy | None, has_labels: bool) -> tuple[str, float] | None:
    """(metric, max_drop) from a gate's accuracy criterion (top-1 drop, fidelity floors, agreement, cosine), or
    None."""
    if policy is None:
        return None
    if policy.max_accuracy_drop is not None and policy.accuracy_metric == "top1" and has_labels:
        return "top1", float(policy.max_accuracy_drop)
    if policy.fidelity_floors:
        return "floors", 0.0
    if policy.min_top1_agreement is not None:
        return "agreement", 1.0 - float(policy.min_top1_agreement)
    if policy.min_cosine is not None:
        return "cosine", 1.0 - float(policy.min_cosine)
    if policy.max_accuracy_drop is not None and policy.accuracy_metric == "top1":
        return "agreement", float(policy.max_accuracy_drop)
    return None
