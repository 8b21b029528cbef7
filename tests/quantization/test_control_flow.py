"""Weighted ops inside If/Loop subgraphs are calibrated and quantized; a branch the calibration data never takes
stays float with the reason; coverage counts subgraph ops (0 of N is never 100%)."""

import numpy as np
import onnx
import pytest

from support import graphs
from support.common import ort_outputs
from support.stages import quantize_model

RNG = np.random.default_rng(0)


def _if_model():
    """x -> If(c): then = Conv+Relu+MatMul-free head, else = another Conv; weights inside the branches."""
    weights = [", ".join(f"{v:.4f}" for v in RNG.standard_normal(108)) for _ in range(2)]
    text = """
    g (float[N,3,8,8] x, bool c) => (float[N,4,8,8] y) {
      y = If (c) <
        then_branch = t () => (float[N,4,8,8] ty) {
          tw = Constant <value = float[4,3,3,3] {W0}> ()
          tb = Constant <value = float[4] {0.1, -0.1, 0.2, 0.0}> ()
          tc = Conv <pads = [1,1,1,1]> (x, tw, tb)
          ty = Relu (tc)
        },
        else_branch = e () => (float[N,4,8,8] ey) {
          ew = Constant <value = float[4,3,3,3] {W1}> ()
          ey = Conv <pads = [1,1,1,1]> (x, ew)
        }>
    }""".replace("W0", weights[0]).replace("W1", weights[1])
    return graphs.make(text, [])


def _data(n=32, flag=True):
    return {"x": RNG.standard_normal((n, 3, 8, 8)).astype(np.float32), "c": np.array(flag)}


def test_if_branch_weights_are_quantized_and_run_as_int8():
    model = _if_model()
    q, report = quantize_model(model, _data())
    onnx.checker.check_model(q, full_check=True)
    v = report["verification"]
    assert v["weighted_total"] == 2  # both branches' Convs count
    assert v["weighted_int8"] == 1 and v["kernel_ops"].get("QLinearConv") == 1  # the branch the data takes
    assert report["weighted_coverage"] == 0.5  # never "100%" for what was not quantized
    skipped = {s["node"]: s["reason"] for s in report["skipped"]}
    assert any("never computed on the calibration data" in r for r in skipped.values())
    x = _data(8)["x"]
    for flag in (True, False):
        ref = ort_outputs(model, {"x": x, "c": np.array(flag)})["y"]
        out = ort_outputs(q, {"x": x, "c": np.array(flag)})["y"]
        assert _cos(ref, out) > 0.999, flag  # both branches still right (the float one reads the quantized input)


def _cos(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_both_branches_quantized_when_the_data_takes_both():
    model = _if_model()
    chunks = [_data(16, True), _data(16, False)]  # samples take each branch
    q, report = quantize_model(model, chunks)
    assert report["verification"]["weighted_int8"] == 2 and report["weighted_coverage"] == 1.0


def test_loop_body_matmul_is_quantized():
    w = (RNG.standard_normal((6, 6)) / 3).astype(np.float32)
    text = """
    g (float[N,6] x, int64 trips) => (float[N,6] y) {
      cond = Constant <value = bool {1}> ()
      y = Loop (trips, cond, x) <body = body (int64 i, bool ci, float[N,6] h) => (bool co, float[N,6] ho) {
          co = Identity (ci)
          m = MatMul (h, w)
          ho = Relu (m)
      }>
    }"""
    model = graphs.make(text.replace("MatMul (h, w)", "MatMul (h, wl)"), [], check=False)
    body = model.graph.node[1].attribute[0].g
    body.initializer.append(onnx.numpy_helper.from_array(w, "wl"))
    onnx.checker.check_model(model, full_check=True)
    data = {"x": RNG.standard_normal((32, 6)).astype(np.float32), "trips": np.array(3, np.int64)}
    q, report = quantize_model(model, data)
    assert report["verification"]["weighted_total"] == 1 and report["verification"]["weighted_int8"] == 1
    x = data["x"][:8]
    ref = ort_outputs(model, {"x": x, "trips": data["trips"]})["y"]
    out = ort_outputs(q, {"x": x, "trips": data["trips"]})["y"]
    assert _cos(ref, out) > 0.995


def test_nothing_quantizable_reports_no_coverage():
    model = graphs.make("g (float[N,4] x) => (float[N,4] y) { y = Exp (x) }", [])
    _, report = quantize_model(model, {"x": RNG.standard_normal((8, 4)).astype(np.float32)})
    assert report["verification"]["coverage"] is None and report["weighted_coverage"] is None


@pytest.mark.parametrize("flag", [True])
def test_calibration_exposure_leaves_the_model_alone(flag):
    model = _if_model()
    before = model.SerializeToString()
    quantize_model(model, _data(8, flag))
    assert model.SerializeToString() == before
