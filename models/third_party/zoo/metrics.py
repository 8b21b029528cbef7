"""Task metrics of the zoo members (numpy only)."""

from __future__ import annotations

import numpy as np


def top1(scores: np.ndarray, labels: np.ndarray) -> dict:
    pred = np.asarray(scores).reshape(len(labels), -1).argmax(1)
    labels = np.asarray(labels)
    per_class = {int(c): float((pred[labels == c] == c).mean()) for c in np.unique(labels)}
    return {"top1": float((pred == labels).mean()), "per_class_recall": per_class}


def ctc_greedy(indices: np.ndarray, blank: int = 0) -> list[list[int]]:
    """Per-row CTC greedy decoding of [N, T] argmax indices: merge repeats, drop blanks."""
    out = []
    for row in indices:
        keep, prev = [], None
        for i in row:
            i = int(i)
            if i != prev and i != blank:
                keep.append(i)
            prev = i
        out.append(keep)
    return out


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def text_scores(pred: list[str], truth) -> dict:
    truth = [str(t) for t in truth]
    dist = sum(edit_distance(p, t) for p, t in zip(pred, truth))
    chars = sum(len(t) for t in truth)
    exact = float(np.mean([p == t for p, t in zip(pred, truth)]))
    return {"cer": dist / max(chars, 1), "exact_match": exact}


def binary_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes a [n, 4] and b [m, 4]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        iou = box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= thr]
    return keep


def detection_pr(dets: list[np.ndarray], gts: list[np.ndarray], thr: float = 0.5) -> dict:
    """Greedy one-to-one matching at IoU >= thr: precision, recall, F1 over all images."""
    tp = n_det = n_gt = 0
    for d, g in zip(dets, gts):
        n_det += len(d)
        n_gt += len(g)
        if len(d) and len(g):
            iou = box_iou(d, g)
            used = set()
            for i in range(len(d)):
                j = int(np.argmax(np.where([k in used for k in range(len(g))], -1, iou[i])))
                if iou[i, j] >= thr and j not in used:
                    used.add(j)
                    tp += 1
    p = tp / n_det if n_det else 0.0
    r = tp / n_gt if n_gt else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "iou_threshold": thr}


def gt_boxes(padded: np.ndarray) -> list[np.ndarray]:
    """Rows of a [-1]-padded [N, K, 4] box array, padding removed."""
    return [b[b[:, 0] >= 0] for b in padded]
