"""Whole-model presets in the search (linear layers only, dynamic): with latency measured the search times them
and keeps the fastest model that meets the goal. The latency probe is replaced by a deterministic stand-in (no
timed assertions in unit tests); the models, scores and ORT sessions are real."""

from __future__ import annotations

import numpy as np

from onnxcompress.quantization import QuantizeConfig
from onnxcompress.tuning.config import TuneConfig
from onnxcompress.tuning.search import MixedPrecisionSearch
from support import qgraphs

TUNE = TuneConfig(metric="cosine", max_drop=0.05, latency_iterations=2, top_k=1)


def _search(speed):
    model = qgraphs.attention()
    data = {"x": np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)}
    search = MixedPrecisionSearch(model, data, QuantizeConfig(placement="fixed"), TUNE)
    search.probe.measure = lambda m: {"batch": 32, "speedup": speed(m)}
    q, result = search.run()
    return q, result.to_dict()


def _ops(model):
    return [n.op_type for n in model.graph.node]


def test_linear_only_preset_wins_when_it_is_fastest():
    def speed(m):  # fewer Q/DQ pairs = faster; dynamic made slow
        ops = _ops(m)
        return 1.0 if "DynamicQuantizeLinear" in ops else 3.0 - 0.1 * ops.count("QuantizeLinear")

    q, report = _search(speed)
    tune = report["tune"]
    phases = [t["phase"] for t in tune["trials"]]
    assert phases[:3] == ["baseline", "preset:linear-only", "preset:dynamic"]
    assert tune["goal_met"] and tune["best"]["phase"] == "preset:linear-only" and tune["mode"] == "static"
    assert set(tune["higher_precision"].values()) == {"float"} and len(tune["higher_precision"]) == 3  # 2 MatMul, Softmax
    assert "Softmax" in _ops(q) and "QLinearSoftmax" not in report["verification"]["kernel_ops"]
    assert set(report["verification"]["kernel_ops"]) <= {"QGemm", "MatMulIntegerToFloat", "QLinearMatMul"}


def test_dynamic_preset_wins_when_it_is_fastest():
    q, report = _search(lambda m: 2.0 if "DynamicQuantizeLinear" in _ops(m) else 1.1)
    tune = report["tune"]
    assert tune["goal_met"] and tune["best"]["phase"] == "preset:dynamic" and tune["mode"] == "dynamic"
    assert "MatMulInteger" in _ops(q) and "QuantizeLinear" not in _ops(q)


def test_no_presets_without_latency():
    model = qgraphs.attention()
    data = {"x": np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)}
    _, result = MixedPrecisionSearch(model, data, QuantizeConfig(placement="fixed"),
                                     TuneConfig(metric="cosine", max_drop=0.05, measure_latency=False)).run()
    assert all(not t["phase"].startswith("preset") for t in result.search.trials)
