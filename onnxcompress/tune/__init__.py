"""Accuracy-aware compression: sensitivity analysis and the mixed-precision search that never loses its best result.

``sensitivity_analysis(model, calib, ...)`` ranks quantizable nodes (one-pass SQNR proxy, then full-model metrics
for the top candidates) and, optionally, prunable channel groups. ``tune_quantization(model, calib, quant, tune,
eval_data=..., output=..., trace=...)`` searches the mixed-precision plan that meets ``tune.max_drop``; its report
holds ``report["tune"]`` (goal, goal_met, stopped, best, trials, sensitivity). ``tune_for_gate`` derives the goal
from a GatePolicy (used by ``optimize`` when the gate has an accuracy criterion).
"""

from __future__ import annotations

from typing import Any

from onnxcompress.tune.config import METRICS, PRECISIONS, TuneConfig
from onnxcompress.tune.search import MixedPrecisionSearch, tune_quantization

__all__ = ["METRICS", "PRECISIONS", "TuneConfig", "MixedPrecisionSearch", "tune_quantization", "sensitivity_analysis",
           "resolve_metric", "goal_from_policy", "tune_for_gate"]


def resolve_metric(metric: str, data, labels: str = "labels") -> str:
    """``auto``: top1 when the data has labels, else agreement."""
    if metric != "auto":
        return metric
    return "top1" if labels in data.keys() else "agreement"


def sensitivity_analysis(model, calib, quant=None, tune: TuneConfig = TuneConfig(), *, eval_data=None,
                         prune_ratio: float = 0.0) -> dict[str, Any]:
    """Ranked per-node quantization sensitivity (+ per-group pruning loss when ``prune_ratio`` > 0), JSON-ready."""
    from onnxcompress.data.inputs import load_input_data
    from onnxcompress.quantize.config import QuantizeConfig
    from onnxcompress.tune.measure import Evaluator
    from onnxcompress.tune.sensitivity import analyze, prune_sensitivity
    from onnxcompress.tune.trials import TrialBuilder

    if not 0.0 <= prune_ratio < 1.0:
        from onnxcompress.errors import RecipeError

        raise RecipeError(f"prune_ratio must be in [0, 1), got {prune_ratio}", hint="e.g. --prune-ratio 0.3")
    calib = load_input_data(calib)
    data = load_input_data(eval_data) if eval_data is not None else calib
    builder = TrialBuilder(model, calib, quant or QuantizeConfig(), tune.mode)
    note = "evaluation data" if eval_data is not None else "calibration data (no --eval given)"
    evaluator = Evaluator(model, data, tune, note)
    result = analyze(builder, evaluator, tune)
    result.update(mode=tune.mode, data=note, samples=evaluator.samples)
    if prune_ratio > 0:
        result["prune"] = prune_sensitivity(builder.model, calib, evaluator, prune_ratio)
    return result


def goal_from_policy(policy, has_labels: bool) -> tuple[str, float] | None:
    """(metric, max_drop) from a gate's accuracy criterion (top-1 drop, agreement, cosine), or None."""
    if policy is None:
        return None
    if policy.max_accuracy_drop is not None and policy.accuracy_metric == "top1" and has_labels:
        return "top1", float(policy.max_accuracy_drop)
    if policy.min_top1_agreement is not None:
        return "agreement", 1.0 - float(policy.min_top1_agreement)
    if policy.min_cosine is not None:
        return "cosine", 1.0 - float(policy.min_cosine)
    if policy.max_accuracy_drop is not None and policy.accuracy_metric == "top1":
        return "agreement", float(policy.max_accuracy_drop)
    return None


def tune_for_gate(model, calib, quant, policy, *, ctx=None, time_budget: float | None = None):
    """Quantize with the mixed-precision search when ``policy`` has an accuracy criterion (None otherwise).

    The goal is checked on the calibration data (``optimize`` validates on the evaluation data afterwards)."""
    from onnxcompress.data.inputs import load_input_data

    data = load_input_data(calib)
    goal = goal_from_policy(policy, "labels" in data.keys())
    if goal is None:
        return None
    tune = TuneConfig(metric=goal[0], max_drop=min(goal[1], 0.999999), time_budget=time_budget, measure_latency=False)
    model, report = tune_quantization(model, data, quant, tune, ctx=ctx)
    if ctx is not None:
        for node, precision in report["tune"]["higher_precision"].items():
            ctx.decide("MixedPrecisionSearch", node, f"kept {precision}",
                       f"goal {goal[0]} drop <= {goal[1]:g} on the calibration data")
    return model, report
