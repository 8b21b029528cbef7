"""Metrics against hand-computed values; streaming accumulators against one-shot computation."""

import math

import numpy as np
import pytest

from onnxcompress.errors import DataError
from onnxcompress.validation import metrics as M

SCORES = np.array([[0.1, 0.7, 0.2],   # pred 1, label 1  ok
                   [0.5, 0.3, 0.2],   # pred 0, label 2  (label rank 3)
                   [0.2, 0.3, 0.5],   # pred 2, label 2  ok
                   [0.6, 0.1, 0.3]])  # pred 0, label 1  (label rank 3)
LABELS = np.array([1, 2, 2, 1])


def test_top_k_hand_computed():
    assert M.top_k_accuracy(SCORES, LABELS, 1) == 0.5
    assert M.top_k_accuracy(SCORES, LABELS, 2) == 0.5  # both misses rank their label last
    assert M.top_k_accuracy(SCORES, LABELS, 3) == 1.0
    assert M.top_k_accuracy(SCORES, LABELS, 5) == 1.0  # k larger than the class count


def test_macro_f1_hand_computed():
    cm = M.confusion_matrix(SCORES.argmax(1), LABELS, 3)
    assert cm.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 1]]
    # class 0: tp0 fp2 fn0 -> 0; class 1: tp1 fp0 fn1 -> 2/3; class 2: tp1 fp0 fn1 -> 2/3
    assert M.macro_f1(cm) == pytest.approx((0 + 2 / 3 + 2 / 3) / 3)
    # a class never seen nor predicted is left out of the average
    assert M.macro_f1(M.confusion_matrix(np.array([0, 1]), np.array([0, 1]), 5)) == 1.0


def test_roc_auc_hand_computed_with_ties():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    labels = np.array([0, 0, 1, 1, 1])
    # pairs (pos, neg): 0.35>0.1 yes, 0.35<0.4 no, 0.8 > both (2), 0.4>0.1 yes, 0.4=0.4 half -> 4.5/6
    assert M.roc_auc(scores, labels) == pytest.approx(4.5 / 6)
    assert math.isnan(M.roc_auc(scores, np.ones(5, dtype=int)))
    assert M.binary_scores(np.array([[1.0, 3.0], [2.0, 0.0]])).tolist() == [2.0, -2.0]
    with pytest.raises(DataError, match="binary"):
        M.binary_scores(SCORES)


def test_cosine_and_sqnr_hand_computed():
    ref = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    cand = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 0.0]])
    assert M.cosine_per_sample(ref, cand).tolist() == pytest.approx([0.0, 1.0, 1.0])
    assert M.sqnr_db(100.0, 1.0) == pytest.approx(20.0)
    assert M.sqnr_db(1.0, 0.0) == math.inf


def test_labels_checked():
    with pytest.raises(DataError, match="one-hot"):
        M.check_labels(np.eye(3), 3)
    with pytest.raises(DataError, match="integers"):
        M.check_labels(np.array([0.0, 1.0]), 2)
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        M.check_labels(np.array([0, 3]), 2, 3)


def test_fidelity_accumulator_streams_like_one_shot():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10)).astype(np.float32)
    cand = ref + 0.1 * rng.standard_normal((50, 10)).astype(np.float32)
    acc = M.FidelityAccumulator()
    for i in range(0, 50, 7):
        acc.update(ref[i:i + 7], cand[i:i + 7])
    r = acc.result().to_dict()
    r64, c64 = ref.astype(np.float64), cand.astype(np.float64)
    assert r["samples"] == 50
    assert r["top1_agreement"] == pytest.approx(float((ref.argmax(1) == cand.argmax(1)).mean()))
    assert r["cosine"] == pytest.approx(float(M.cosine_per_sample(ref, cand).mean()))
    expected_sqnr = 10 * np.log10((r64 ** 2).sum() / ((r64 - c64) ** 2).sum())
    assert r["sqnr_db"] == pytest.approx(expected_sqnr)
    assert r["max_abs_error"] == pytest.approx(float(np.abs(r64 - c64).max()))
    assert r["mean_abs_error"] == pytest.approx(float(np.abs(r64 - c64).mean()))


def test_fidelity_without_class_axis_has_no_agreement():
    acc = M.FidelityAccumulator()
    acc.update(np.ones((4, 1)), np.ones((4, 1)))
    assert acc.result().top1_agreement is None
    assert acc.result().sqnr_db == math.inf


def test_task_accumulator_streams_like_one_shot():
    acc = M.TaskAccumulator(("top1", "top5", "f1"))
    acc.update(SCORES[:2], LABELS[:2])
    acc.update(SCORES[2:], LABELS[2:])
    r = acc.result()
    assert r["top1"] == 0.5 and r["top5"] == 1.0
    assert r["f1"] == pytest.approx(4 / 9)
    binary = M.TaskAccumulator(("auc",))
    binary.update(np.array([[0.1], [0.4]]), np.array([0, 0]))
    binary.update(np.array([[0.35], [0.8], [0.4]]), np.array([1, 1, 1]))
    assert binary.result()["auc"] == pytest.approx(4.5 / 6)
