"""Pure metric functions and the streaming accumulators built on them (numpy only, no I/O).

Task metrics compare model scores with labels: top-k accuracy, macro-F1 (averaged over the classes that occur in
the labels or the predictions, as scikit-learn does), binary ROC-AUC (Mann-Whitney U with ties counted half).
Fidelity metrics compare a candidate's outputs with the reference's: top-1 agreement, cosine similarity (per
sample, averaged), SQNR in dB, max/mean absolute error. Accumulators hold O(classes^2) state, never the outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from onnxcompress.errors import DataError


# --- pure functions ---------------------------------------------------------------------------------------------
def top_k_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    """Number of samples whose label is among the k highest scores (ties broken by class index)."""
    scores = class_scores(scores)
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return int((top == labels.reshape(-1, 1)).any(axis=1).sum())


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    labels = check_labels(labels, len(scores))
    return top_k_correct(scores, labels, k) / max(len(labels), 1)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), pred.astype(np.int64)), 1)
    return counts


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes present in the labels or the predictions."""
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    present = (support + predicted) > 0
    if not present.any():
        return float("nan")
    denom = support + predicted  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean())


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Binary ROC-AUC = P(score of a positive > score of a negative), ties counted 1/2."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    pos, neg = int((labels == 1).sum()), int((labels == 0).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties (1-based)
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[labels == 1].sum() - pos * (pos + 1) / 2.0
    return float(u / (pos * neg))


def binary_scores(scores: np.ndarray) -> np.ndarray:
    """One score per sample for the positive class: the logit itself, or s[:,1] - s[:,0] for two columns."""
    s = np.asarray(scores, dtype=np.float64)
    s = s.reshape(len(s), -1)
    if s.shape[1] == 1:
        return s[:, 0]
    if s.shape[1] == 2:
        return s[:, 1] - s[:, 0]
    raise DataError(f"ROC-AUC needs a binary output (1 or 2 scores per sample), found {s.shape[1]}",
                    hint="drop 'auc' from the metrics for a multi-class model")


def class_scores(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores)
    return s.reshape(len(s), -1)


def check_labels(labels: np.ndarray, n: int, n_classes: int | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"labels must have shape [{n}] (one class index per sample), found {list(labels.shape)}",
                        hint="store integer class indices, not one-hot vectors")
    if labels.dtype.kind not in "iub":
        raise DataError(f"labels must be integers, found dtype {labels.dtype}", hint="use labels.astype(np.int64)")
    if len(labels) and (labels.min() < 0 or (n_classes is not None and labels.max() >= n_classes)):
        raise DataError(f"labels must lie in [0, {n_classes}), found {labels.min()}..{labels.max()}",
                        hint="check that the labels match the model's output classes")
    return labels.astype(np.int64)


def cosine_per_sample(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened output; 1.0 where both are all-zero."""
    a = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    b = np.asarray(cand, dtype=np.float64).reshape(len(cand), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    both_zero = (na == 0) & (nb == 0)
    denom = na * nb
    cos = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
    return np.where(both_zero, 1.0, cos)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """10 log10(sum ref^2 / sum (ref - cand)^2); +inf for an exact match."""
    if noise_power == 0:
        return math.inf
    ratio = signal_power / noise_power
    if ratio == 0:  # no signal, or a ratio below the smallest float
        return -math.inf
    return 10.0 * math.log10(ratio) if math.isfinite(ratio) else ratio


# --- streaming accumulators -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fidelity:
    """Candidate vs reference on one output."""

    samples: int
    top1_agreement: float | None
    cosine: float
    cosine_min: float | None
    sqnr_db: float
    max_abs_error: float
    mean_abs_error: float

    def to_dict(self) -> dict[str, float | int | None]:
        return {"samples": self.samples, "top1_agreement": self.top1_agreement, "cosine": self.cosine,
                "cosine_min": self.cosine_min, "sqnr_db": self.sqnr_db, "max_abs_error": self.max_abs_error,
                "mean_abs_error": self.mean_abs_error}


@dataclass
class FidelityAccumulator:
    """Reference vs candidate for one output, accumulated over batches."""

    samples: int = 0
    elements: int = 0
    agree: int = 0
    argmax_ok: bool = True
    cos_sum: float = 0.0
    cos_min: float = math.inf
    signal: float = 0.0
    noise: float = 0.0
    abs_sum: float = 0.0
    abs_max: float = 0.0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        if ref.shape != cand.shape:
            raise DataError(f"output shapes differ: reference {list(ref.shape)} vs candidate {list(cand.shape)}",
                            hint="compare models with the same output signature")
        n = ref.shape[0] if ref.ndim else 1
        r = np.asarray(ref, dtype=np.float64).reshape(n, -1)
        c = np.asarray(cand, dtype=np.float64).reshape(n, -1)
        diff = np.abs(r - c)
        self.samples += n
        self.elements += r.size
        self.signal += float((r * r).sum())
        self.noise += float((diff * diff).sum())
        self.abs_sum += float(diff.sum())
        self.abs_max = max(self.abs_max, float(diff.max()) if diff.size else 0.0)
        cos = cosine_per_sample(r, c)
        self.cos_sum += float(cos.sum())
        self.cos_min = min(self.cos_min, float(cos.min()) if cos.size else math.inf)
        self.argmax_ok = self.argmax_ok and r.shape[1] >= 2
        if self.argmax_ok:
            self.agree += int((r.argmax(axis=1) == c.argmax(axis=1)).sum())

    def result(self) -> Fidelity:
        n = max(self.samples, 1)
        return Fidelity(self.samples, self.agree / n if self.argmax_ok and self.samples else None, self.cos_sum / n,
                        self.cos_min if self.samples else None, sqnr_db(self.signal, self.noise), self.abs_max,
                        self.abs_sum / max(self.elements, 1))


@dataclass
class TaskAccumulator:
    """Task metrics of one model's scores against labels, accumulated over batches."""

    metrics: tuple[str, ...]
    samples: int = 0
    top1: int = 0
    top5: int = 0
    confusion: np.ndarray | None = None
    auc_scores: list[np.ndarray] = field(default_factory=list)  # one float per sample (binary models only)
    auc_labels: list[np.ndarray] = field(default_factory=list)

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        s = class_scores(scores)
        n_classes = s.shape[1] if s.shape[1] > 1 else 2
        labels = check_labels(labels, len(s), n_classes)
        self.samples += len(s)
        if "top1" in self.metrics:
            self.top1 += top_k_correct(s, labels, 1)
        if "top5" in self.metrics:
            self.top5 += top_k_correct(s, labels, 5)
        if "f1" in self.metrics:
            pred = s.argmax(axis=1) if s.shape[1] > 1 else (s[:, 0] > 0).astype(np.int64)
            cm = confusion_matrix(pred, labels, n_classes)
            self.confusion = cm if self.confusion is None else self.confusion + cm
        if "auc" in self.metrics:
            self.auc_scores.append(binary_scores(s).astype(np.float32))
            self.auc_labels.append(labels.astype(np.int8))

    def result(self) -> dict[str, float]:
        n = max(self.samples, 1)
        out: dict[str, float] = {}
        if "top1" in self.metrics:
            out["top1"] = self.top1 / n
        if "top5" in self.metrics:
            out["top5"] = self.top5 / n
        if "f1" in self.metrics and self.confusion is not None:
            out["f1"] = macro_f1(self.confusion)
        if "auc" in self.metrics and self.auc_scores:
            out["auc"] = roc_auc(np.concatenate(self.auc_scores), np.concatenate(self.auc_labels))
        return out
