"""A Concat of inputs with far-apart ranges (a detector head's [boxes in pixels, class scores in 0..1]) stays
float, says why, and keeps the narrow input exact; a Concat of like ranges stays int8 (QLinearConcat)."""

from __future__ import annotations

import numpy as np

import onnxcompress as oc
from onnxcompress.quantization import insert_qdq
from onnxcompress.quantization.verify import optimized
from support import graphs
from support.common import ort_outputs


def detector_head(box_scale: float):
    """Boxes (a Conv scaled to about +-``box_scale``) and class scores (Sigmoid of another Conv), concatenated
    along the channels into the graph output."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((8, 3, 3, 3)) / 5).astype(np.float32)  # r1 about 0..2
    wb = (rng.standard_normal((4, 8, 1, 1)) * box_scale / 4).astype(np.float32)
    wc = (rng.standard_normal((6, 8, 1, 1)) / 2).astype(np.float32)  # logits about +-4
    return graphs.make("""
    g (float[N,3,16,16] x, float[8,3,3,3] w1, float[8] b1, float[4,8,1,1] wb, float[6,8,1,1] wc) => (float[N,10,16,16] y) {
      c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
      r1 = Relu (c1)
      boxes = Conv (r1, wb)
      logits = Conv (r1, wc)
      scores = Sigmoid (logits)
      y = Concat <axis = 1> (boxes, scores)
    }""", ["b1"], values={"w1": w1, "wb": wb, "wc": wc})


def _data():
    return {"x": np.random.default_rng(1).standard_normal((32, 3, 16, 16)).astype(np.float32)}


def _quantize(model):
    return oc.quantize(model, _data(), oc.QuantizeConfig(placement="fixed"), self_check=oc.SelfCheckConfig(enabled=False))


def test_concat_of_far_apart_ranges_stays_float_and_keeps_the_scores(monkeypatch):
    model = detector_head(300.0)
    q, result = _quantize(model)
    reason = dict(result.skipped).get("Concat_5", "")
    assert "ranges differ" in reason and "levels" in reason, dict(result.skipped)
    kernels = {n.op_type for n in optimized(q).graph.node}
    assert "QLinearConcat" not in kernels and "QLinearConv" in kernels and "QLinearSigmoid" in kernels
    ref, out = ort_outputs(model, _data())["y"], ort_outputs(q, _data())["y"]
    scores_err = np.abs(out[:, 4:] - ref[:, 4:]).max()
    assert scores_err < 0.05, scores_err  # the 0..1 scores keep their own grid (1/255), not the boxes' (~2)
    assert result.config.exclude == ()  # the user's recipe is untouched: the reason lives in the report
    monkeypatch.setattr(insert_qdq, "CONCAT_SPREAD", float("inf"))  # what a shared scale does to them
    forced, _ = _quantize(model)
    assert np.abs(ort_outputs(forced, _data())["y"][:, 4:] - ref[:, 4:]).max() > 10 * scores_err


def test_concat_of_like_ranges_stays_int8():
    q, result = _quantize(detector_head(0.5))
    assert "Concat_5" not in dict(result.skipped)
    assert "QLinearConcat" in {n.op_type for n in optimized(q).graph.node}
