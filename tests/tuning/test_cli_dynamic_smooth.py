"""CLI (`sensitivity`, `quantize --max-drop/--mode`), dynamic quantization and SmoothQuant."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress.cli import app
from onnxcompress.data.inputs import load_input_data
from onnxcompress.passes import PassContext, apply_to_model
from onnxcompress.quantization import QuantizeConfig
from onnxcompress.quantization.smooth import SmoothQuantPass
from support import fragile, graphs, qgraphs
from support.common import assert_close_rel, ort_outputs
from support.stages import quantize_model


def quantize_dynamic_model(model, config=None):
    return quantize_model(model, None, config or QuantizeConfig(placement="fixed", mode="dynamic"))


def smooth_model(model, data, alpha):
    out, result = apply_to_model(model, SmoothQuantPass(alpha), PassContext(calibration=load_input_data(data)))
    return out, result.stats

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune_cli")
    model = fragile.fragile_mlp()
    onnx.save(model, str(d / "m.onnx"))
    np.savez(d / "calib.npz", **fragile.fragile_data(model))
    return d


def test_cli_sensitivity_ranks_fragile_first(files):
    res = runner.invoke(app, ["sensitivity", str(files / "m.onnx"), "--calib", str(files / "calib.npz"), "--json",
                              "--top-k", "2", "--prune-ratio", "0.25"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["ranking"][0] == "MatMul_3" and info["metric"] == "top1"
    assert info["prune"] and all("drop" in g or "error" in g for g in info["prune"])


def test_cli_quantize_max_drop_and_exit_codes(files):
    out = files / "mixed.onnx"
    res = runner.invoke(app, ["quantize", "--placement", "fixed", str(files / "m.onnx"), "-o", str(out), "--calib",
                              str(files / "calib.npz"),
                              "--max-drop", "0.01"])
    assert res.exit_code == 0, res.output
    assert "GOAL MET" in res.output and "MatMul_3=float" in res.output
    assert out.is_file() and (files / "mixed.trace.json").is_file()
    out2 = files / "impossible.onnx"
    res = runner.invoke(app, ["quantize", "--placement", "fixed", str(files / "m.onnx"), "-o", str(out2), "--calib",
                              str(files / "calib.npz"),
                              "--max-drop", "0", "--metric", "cosine", "--time-budget", "0.001"])
    assert res.exit_code == 1, res.output  # goal not met: exit 1, best model and trace still written
    assert "GOAL NOT MET" in res.output and out2.is_file()
    trace = json.loads((files / "impossible.trace.json").read_text())
    assert trace["goal_met"] is False and trace["trials"]
    res = runner.invoke(app, ["quantize", "--placement", "fixed", str(files / "m.onnx"), "-o", str(out2), "--calib",
                              str(files / "calib.npz"),
                              "--max-drop", "0.01", "--metric", "f1"])
    assert res.exit_code == 3 and "unknown tuning metric" in res.output


def test_dynamic_quantization_fuses_and_stays_close():
    model = qgraphs.attention()
    q, report = quantize_dynamic_model(model)
    assert {r["node"] for r in report["quantized"]} == {"Gemm_0", "MatMul_1", "MatMul_2"}
    assert any("activation x activation" in s["reason"] for s in report["skipped"])
    assert report["kernel_ops"].get("MatMulIntegerToFloat", 0) + report["kernel_ops"].get("DynamicQuantizeMatMul", 0) == 3
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("DynamicQuantizeLinear") == 1  # shared by the three consumers of x
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    a, b = ort_outputs(model, {"x": x})["y"], ort_outputs(q, {"x": x})["y"]
    assert_close_rel(a, b, rel=0.1)
    q2, again = quantize_dynamic_model(model, QuantizeConfig(placement="fixed", mode="dynamic", exclude=("Gemm",)))
    assert {r["node"] for r in again["quantized"]} == {"MatMul_1", "MatMul_2"}
    q3, _ = quantize_dynamic_model(model)
    assert q3.SerializeToString() == q.SerializeToString()  # deterministic


def _ln_model():
    rng = np.random.default_rng(3)
    gamma = np.ones(16, np.float32)
    gamma[5] = 30.0  # one outlier channel after the LayerNorm
    return graphs.make("""
    g (float[N,4,16] x, float[16] gamma, float[16] beta, float[16,16] wq, float[16,8] wk) => (float[N,4,16] q,
       float[N,4,8] k) {
      h = LayerNormalization <axis=-1> (x, gamma, beta)
      q = MatMul (h, wq)
      k = MatMul (h, wk)
    }""", [], values={"gamma": gamma, "beta": (rng.standard_normal(16) * 0.1).astype(np.float32),
                      "wq": (rng.standard_normal((16, 16)) / 4).astype(np.float32),
                      "wk": (rng.standard_normal((16, 8)) / 4).astype(np.float32)})


def test_smooth_quant_preserves_function_and_helps_int8():
    model = _ln_model()
    x = np.random.default_rng(0).standard_normal((64, 4, 16)).astype(np.float32)
    smoothed, stats = smooth_model(model, {"x": x}, alpha=0.5)
    assert stats["smoothed"] == 1
    ref, out = ort_outputs(model, {"x": x}), ort_outputs(smoothed, {"x": x})
    for name in ("q", "k"):
        assert_close_rel(ref[name], out[name], rel=1e-5)
    cfg = QuantizeConfig(placement="fixed", verify=False, smooth_quant="off")
    plain, _ = quantize_model(model, {"x": x}, cfg)
    smooth_q, _ = quantize_model(smoothed, {"x": x}, cfg)
    err = lambda m: float(np.mean((ort_outputs(m, {"x": x})["q"] - ref["q"]) ** 2))
    assert err(smooth_q) < 0.5 * err(plain)
    assert model.graph.initializer[0].SerializeToString() == _ln_model().graph.initializer[0].SerializeToString()
