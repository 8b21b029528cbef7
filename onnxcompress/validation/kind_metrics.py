"""Fidelity by output kind: the metrics each kind is measured with, accumulated over batches, and the floor check.

Every metric is a ratio of two sums accumulated over batches (so memory does not grow with the data):

| kind | metrics (the judged one first) |
|---|---|
| class_logits / class_probabilities | top1_agreement, top5_agreement, kl_divergence |
| embedding | cosine (mean over the vectors along the last axis), cosine_min |
| dense_map | iou (values in [0, 1]: maps above the threshold), else channel_relative_error; mean_abs_error |
| sequence | step_agreement (same argmax class at each step, the class axis last) |
| decision | decision_agreement (values above the threshold, or equal integers) |
| regression / state | relative_error |

``top5_agreement``: the reference's top-1 class is among the candidate's top 5 (more than 5 classes only);
``kl_divergence``: mean KL(reference || candidate) of the class distributions (softmax of logits).
``relative_error`` is ``||candidate - reference||_2 / ||reference||_2`` over the whole output, for every kind;
``channel_relative_error`` the largest of it over the channels of a dense map (axis 1 of [N, C, ...], or the
shorter of the two axes of a rank-3 [N, A, C] / [N, C, A] output), so boxes and scores concatenated into one
per-anchor map are each held to the floor (box coordinates in pixels would otherwise hide lost class scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxcompress.validation.config import FidelityFloors
from onnxcompress.validation.outputs import KindDecision

Sums = dict[str, tuple[Any, Any]]  # (numerator, denominator): floats, or per-channel arrays

#: (kind, judged metric) -> (the FidelityFloors field, higher is better)
FLOORS: dict[tuple[str, str], tuple[str, bool]] = {
    ("class_logits", "top1_agreement"): ("class_top1_agreement", True),
    ("class_probabilities", "top1_agreement"): ("class_top1_agreement", True),
    ("embedding", "cosine"): ("embedding_cosine", True),
    ("dense_map", "iou"): ("dense_map_iou", True),
    ("dense_map", "channel_relative_error"): ("dense_map_relative_error", False),
    ("sequence", "step_agreement"): ("sequence_step_agreement", True),
    ("decision", "decision_agreement"): ("decision_agreement", True),
    ("regression", "relative_error"): ("regression_relative_error", False),
    ("state", "relative_error"): ("state_relative_error", False),
}


def _rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(-1, a.shape[-1]) if a.ndim >= 2 else a.reshape(-1, 1)


def _log_distribution(rows: np.ndarray, kind: str) -> np.ndarray:
    if kind == "class_probabilities":
        p = np.clip(rows, 1e-12, None)
        return np.log(p / p.sum(axis=1, keepdims=True))
    shifted = rows - rows.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _class(ref: np.ndarray, cand: np.ndarray, d: KindDecision) -> Sums:
    r, c = _rows(ref), _rows(cand)
    n = float(len(r))
    top = r.argmax(axis=1)
    out: Sums = {"top1_agreement": (float((top == c.argmax(axis=1)).sum()), n)}
    if r.shape[1] > 5:
        top5 = np.argsort(-c, axis=1, kind="stable")[:, :5]
        out["top5_agreement"] = (float((top5 == top[:, None]).any(axis=1).sum()), n)
    lr, lc = _log_distribution(r, d.kind), _log_distribution(c, d.kind)
    out["kl_divergence"] = (float((np.exp(lr) * (lr - lc)).sum()), n)
    return out


def _embedding(ref: np.ndarray, cand: np.ndarray, d: KindDecision) -> Sums:
    r, c = _rows(ref), _rows(cand)
    nr, nc = np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)
    denom = nr * nc
    cos = np.divide((r * c).sum(axis=1), denom, out=np.zeros(len(r)), where=denom > 0)
    cos = np.where((nr == 0) & (nc == 0), 1.0, cos)
    return {"cosine": (float(cos.sum()), float(len(r))), "cosine_min": (float(cos.min(initial=1.0)), 1.0)}


def channel_axis(shape: tuple[int, ...]) -> int:
    """The channel axis of a dense map: 1 for [N, C, ...] (rank 4+), the shorter of axes 1 and 2 for rank 3."""
    if len(shape) == 3 and shape[2] < shape[1]:
        return 2
    return 1


def _dense(ref: np.ndarray, cand: np.ndarray, d: KindDecision) -> Sums:
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    out: Sums = {"mean_abs_error": (float(np.abs(r - c).sum()), float(r.size))}
    if d.metric == "channel_relative_error" and r.ndim >= 2:
        axis = channel_axis(r.shape)
        others = tuple(i for i in range(r.ndim) if i != axis)
        diff = r - c
        out["channel_relative_error"] = ((diff * diff).sum(axis=others), (r * r).sum(axis=others))
    if d.metric == "iou":
        t = d.threshold if d.threshold is not None else 0.5
        pr, pc = r > t, c > t
        out["iou"] = (float((pr & pc).sum()), float((pr | pc).sum()))
    return out


def _sequence(ref: np.ndarray, cand: np.ndarray, d: KindDecision) -> Sums:
    r, c = np.asarray(ref), np.asarray(cand)
    same = r.argmax(axis=-1) == c.argmax(axis=-1)
    return {"step_agreement": (float(same.sum()), float(same.size))}


def _decision(ref: np.ndarray, cand: np.ndarray, d: KindDecision) -> Sums:
    r, c = np.asarray(ref), np.asarray(cand)
    same = (r == c) if d.threshold is None else ((r > d.threshold) == (c > d.threshold))
    return {"decision_agreement": (float(same.sum()), float(same.size))}


def _none(ref: np.ndarray, cand: np.ndarray, d: KindDecision) -> Sums:
    return {}


#: kind -> the function that turns one batch into sums (relative_error is added for every kind)
MEASURES: dict[str, Callable[[np.ndarray, np.ndarray, KindDecision], Sums]] = {
    "class_logits": _class, "class_probabilities": _class, "embedding": _embedding, "dense_map": _dense,
    "sequence": _sequence, "decision": _decision, "regression": _none, "state": _none,
}
def _worst_channel(num: Any, den: Any) -> float:
    """The largest per-channel relative error; a channel that is zero in the reference is measured against the
    whole map's scale (1e-6 of its mean channel energy) so it cannot divide by zero."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    floor = max(float(den.mean()) * 1e-6, 1e-30)
    return float(np.sqrt(num / np.maximum(den, floor)).max(initial=0.0))


#: metrics whose sums are combined otherwise than numerator / denominator
_COMBINE: dict[str, Callable[[Any, Any], float]] = {
    "channel_relative_error": _worst_channel,
    "relative_error": lambda num, den: math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf),
    "cosine_min": lambda num, den: num,
    "iou": lambda num, den: num / den if den > 0 else 1.0,  # both maps empty everywhere: identical
}


@dataclass
class KindAccumulator:
    """The kind metrics of one output, accumulated over batches."""

    decision: KindDecision
    sums: dict[str, list[Any]] = field(default_factory=dict)

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        batch = MEASURES[self.decision.kind](ref, cand, self.decision)
        r = np.asarray(ref, dtype=np.float64)
        diff = r - np.asarray(cand, dtype=np.float64)
        batch["relative_error"] = (float((diff * diff).sum()), float((r * r).sum()))
        for name, (num, den) in batch.items():
            acc = self.sums.setdefault(name, [0.0, 0.0] if name != "cosine_min" else [math.inf, 1.0])
            if name == "cosine_min":
                acc[0] = min(acc[0], num)
            else:  # scalars, or per-channel arrays (channel_relative_error)
                acc[0] = acc[0] + num
                acc[1] = acc[1] + den

    def metrics(self) -> dict[str, float]:
        out = {}
        for name, (num, den) in self.sums.items():
            combine = _COMBINE.get(name, lambda n, d: n / d if d > 0 else math.nan)
            out[name] = float(combine(num, den))
        return out


@dataclass(frozen=True)
class FloorCheck:
    """One output judged against its kind's floor."""

    output: str
    kind: str
    metric: str
    value: float
    floor: float
    higher_is_better: bool
    floor_name: str

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.floor if self.higher_is_better else self.value <= self.floor

    @property
    def shortfall(self) -> float:
        """How far the value misses the floor, in the metric's units (0 when it meets it)."""
        if math.isnan(self.value):
            return 1.0
        gap = self.floor - self.value if self.higher_is_better else self.value - self.floor
        return max(0.0, min(gap, 1e6))

    @property
    def message(self) -> str:
        word = (">=" if self.higher_is_better else "<=") if self.passed else ("<" if self.higher_is_better else ">")
        return f"output '{self.output}' ({self.kind}): {self.metric} {self.value:.4g} {word} {self.floor:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "floor": self.floor, "floor_name": self.floor_name,
                "higher_is_better": self.higher_is_better, "passed": self.passed}


def floor_check(decision: KindDecision, metrics: dict[str, float], floors: FidelityFloors) -> FloorCheck:
    name, higher = FLOORS[(decision.kind, decision.metric)]
    value = metrics.get(decision.metric, math.nan)
    return FloorCheck(decision.output, decision.kind, decision.metric, value, getattr(floors, name), higher, name)


@dataclass(frozen=True)
class OutputFidelity:
    """The kind of one output, its kind metrics and the floor check."""

    decision: KindDecision
    metrics: dict[str, float]
    floor: FloorCheck

    def to_dict(self) -> dict[str, Any]:
        return {**self.decision.to_dict(), "value": self.metrics.get(self.decision.metric),
                "kind_metrics": dict(self.metrics), "floor": self.floor.to_dict()}


def output_fidelity(acc: KindAccumulator, floors: FidelityFloors) -> OutputFidelity:
    metrics = acc.metrics()
    return OutputFidelity(acc.decision, metrics, floor_check(acc.decision, metrics, floors))
