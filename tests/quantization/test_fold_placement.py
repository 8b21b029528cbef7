"""Quantizer pre-processing (constant folding, Conv+Add -> bias, hard-swish -> x*HardSigmoid(x)): fewer float islands
between int8 kernels, read from onnxruntime's optimized graph; accuracy holds (fixture and the third-party ppocr_cls)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from onnxcompress.ir.io import convert_opset, load_model
from onnxcompress.quantization import QuantizeConfig
from support import qgraphs
from support.common import ort_outputs, zoo_member
from support.graphs import hardswish_convs
from support.stages import quantize_model

PPOCR = zoo_member("ppocr_cls")


def _cos(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_hardswish_runs_as_qlinearmul_with_no_float_add_div_clip():
    model = hardswish_convs()
    data = qgraphs.data((3, 8, 8))
    qmodel, report = quantize_model(model, data, QuantizeConfig(placement="fixed"))
    v = report["verification"]
    assert v["kernel_ops"].get("QLinearConv") == 3 and v["kernel_ops"].get("QLinearMul") == 2, v["kernel_ops"]
    assert v["kernel_ops"].get("QLinearAdd") == 2  # each HardSigmoid lowered to an Add into a saturating grid
    ops = Counter(n.op_type for n in qmodel.graph.node)
    assert ops["Div"] == ops["Clip"] == ops["HardSigmoid"] == 0 and ops["Add"] == 2
    assert v["qdq_left"] == {"DequantizeLinear": 1, "QuantizeLinear": 1}  # the input's Q and the output's DQ only
    assert report["skipped"] == [] and v["coverage"] == 1.0
    x = data["x"][:16]
    assert _cos(ort_outputs(model, {"x": x})["y"], ort_outputs(qmodel, {"x": x})["y"]) > 0.995
    plain, plain_report = quantize_model(model, data, QuantizeConfig(placement="fixed", rewrites=False))
    assert sum(plain_report["verification"]["qdq_left"].values()) > sum(v["qdq_left"].values())


def test_ppocr_cls_float_islands_removed_and_agreement_holds():
    if not (PPOCR / "model.onnx").exists():
        pytest.skip("third-party ppocr_cls not fetched (python models/third_party/fetch.py)")
    model = convert_opset(load_model(PPOCR / "model.onnx"), 17)
    calib = {"x": np.load(PPOCR / "calib.npz")["x"][:64]}
    qmodel, report = quantize_model(model, calib, QuantizeConfig(placement="fixed", calibration_samples=64))
    v = report["verification"]
    assert v["weighted_int8"] == v["weighted_total"] == 54
    assert v["kernel_ops"]["QLinearMul"] == 27 and v["qdq_left"]["QuantizeLinear"] <= 2, v
    assert v["kernel_ops"]["QLinearAdd"] >= 27  # the 27 HardSigmoids, lowered (plus the residual Adds)
    ops = Counter(n.op_type for n in qmodel.graph.node)
    assert ops["Div"] == ops["Clip"] == ops["HardSigmoid"] == 0 and ops["Add"] <= 8 + 27
    x = np.load(PPOCR / "eval.npz")["x"][:200]
    ref = next(iter(ort_outputs(model, {"x": x}).values()))
    out = next(iter(ort_outputs(qmodel, {"x": x}).values()))
    assert (ref.argmax(1) == out.argmax(1)).mean() >= 0.98
