"""Calibrators, selection, overrides, parameter math, bad input and the CLI."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress.cli import app
from onnxcompress.config import config_from_dict
from onnxcompress.errors import (
    EmptyDataError,
    InputMismatchError,
    NonFiniteDataError,
    RecipeError,
)
from onnxcompress.quantization import QuantizeConfig
from onnxcompress.quantization import params as P
from onnxcompress.quantization.calibrate import Collector, compute_range
from support import qgraphs
from support.common import ort_outputs
from support.stages import quantize_model

DATA = qgraphs.data((3, 16, 16))


# --- parameter math ---------------------------------------------------------------------------------------------
def test_activation_params_exact_zero():
    p = P.activation_params(0.0, 5.1, "uint8", symmetric=False)
    assert p.zero_point == 0 and np.isclose(p.scale, 5.1 / 255)
    p = P.activation_params(-1.0, 3.0, "uint8", symmetric=False)
    assert P.dequantize_array(P.quantize_array(np.zeros(1, np.float32), p), p)[0] == 0.0
    p = P.activation_params(-2.0, 1.0, "int8", symmetric=True)
    assert p.zero_point == 0 and np.isclose(p.scale, 2.0 / 127)


def test_bias_saturation_grows_weight_scale():
    w = np.full((2, 3), 1e-6, np.float32)
    wp = P.weight_params(w, 0)
    bias = np.array([1e4, 0.0], np.float32)
    grown, n = P.fit_weight_to_bias(wp, bias, input_scale=1e-6)
    assert n == 1 and grown.scale[0] > wp.scale[0] and grown.scale[1] == wp.scale[1]
    q = P.quantize_bias(bias, P.bias_params(1e-6, grown))
    assert abs(int(q[0])) < P.INT32_MAX
    np.testing.assert_allclose(q[0] * 1e-6 * grown.scale[0], 1e4, rtol=1e-6)


# --- calibrators ------------------------------------------------------------------------------------------------
def _collect(x, bins=2048, batches=4):
    c = Collector(["t"], bins)
    chunks = np.array_split(x, batches)
    c.minmax_pass({"t": b} for b in chunks)
    c.histogram_pass({"t": b} for b in chunks)
    return c.stats["t"]


def test_histogram_memory_is_bounded_by_bins():
    small, large = _collect(np.random.default_rng(0).standard_normal(1000)), \
        _collect(np.random.default_rng(0).standard_normal(200_000), batches=50)
    assert small.hist.shape == large.hist.shape == (2048,)
    assert large.hist.sum() == 200_000


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse"])
def test_histogram_calibrators_clip_the_tail(method):
    rng = np.random.default_rng(1)
    x = np.concatenate([np.abs(rng.laplace(size=200_000)), [30.0]]).astype(np.float32)  # heavy tail + an outlier
    s = _collect(x)
    lo, hi = compute_range(s, method, percentile=99.99)
    limit = 30.0 if method == "mse" else 0.6 * 30.0  # mse weighs the outlier's squared error: it clips less
    assert 0.0 <= lo < 1e-3 and 2.0 < hi < limit  # the tail is clipped, the bulk is kept
    assert compute_range(s, "minmax")[1] == 30.0


@pytest.mark.parametrize("calibrator", ["percentile", "entropy", "mse"])
def test_calibrators_end_to_end(calibrator):
    model = qgraphs.conv_residual()
    q, report = quantize_model(model, DATA, QuantizeConfig(placement="fixed", calibrator=calibrator))
    _, ref = quantize_model(model, DATA, QuantizeConfig(placement="fixed", verify=False))
    assert report["calibrator"] == calibrator and report["coverage"] == 1.0
    for name, t in report["tensors"].items():
        if t["range"] is not None:
            assert t["range"][1] <= ref["tensors"][name]["range"][1] + 1e-6
    feeds = {"x": DATA["x"][:16]}
    a, b = ort_outputs(model, feeds)["y"], ort_outputs(q, feeds)["y"]
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.75


def test_dynamic_batch_and_sample_limit():
    _, report = quantize_model(qgraphs.conv_residual(), DATA,
                               QuantizeConfig(placement="fixed", batch_size=7, calibration_samples=20, verify=False))
    assert report["config"]["calibration_samples"] == 20


# --- selection and overrides ------------------------------------------------------------------------------------
@pytest.mark.parametrize("exclude,kept", [(("Gemm",), {"Gemm_10"}), (("re:^Conv_[06]$",), {"Conv_0", "Conv_6"}),
                                          (("Add_4",), {"Add_4"})])
def test_exclude(exclude, kept):
    q, report = quantize_model(qgraphs.conv_residual(), DATA, QuantizeConfig(placement="fixed", exclude=exclude))
    skipped = {s["node"] for s in report["skipped"] if s["reason"].startswith("excluded")}
    assert skipped == kept
    assert kept <= {f["node"] for f in report["float_nodes"]}
    assert not kept & {k["node"] for k in report["int8_kernels"]}


def test_include_and_layer_policy():
    _, report = quantize_model(qgraphs.conv_residual(), DATA, QuantizeConfig(placement="fixed", include=("Conv",), verify=False))
    assert {q["op"] for q in report["quantized"] if q["kind"] != "passthrough"} == {"Conv"}
    _, report = quantize_model(qgraphs.conv_residual(), DATA,
                               QuantizeConfig(placement="fixed", layer_policy="skip_first_last", verify=False))
    reasons = {s["node"]: s["reason"] for s in report["skipped"]}
    assert "first" in reasons["Conv_0"] and "last" in reasons["Gemm_10"]


def test_overrides_range_and_int16():
    model = qgraphs.conv_residual()
    cfg = config_from_dict(QuantizeConfig, {"overrides": {"r3": {"range": [0.0, 50.0]}, "a": {"dtype": "int16"}},
                                             "placement": "fixed"})
    q, report = quantize_model(model, DATA, cfg)
    assert np.isclose(report["tensors"]["r3"]["scale"], 50.0 / 255)
    assert report["tensors"]["a"]["dtype"] == report["tensors"]["p"]["dtype"] == "int16"
    assert any(i.domain == "com.microsoft" for i in q.opset_import)
    feeds = {"x": DATA["x"][:16]}
    a, b = ort_outputs(model, feeds)["y"], ort_outputs(q, feeds)["y"]
    assert np.abs(a - b).max() <= len(report["tensors"]) * float(np.ptp(a)) / 255


def test_config_validation():
    with pytest.raises(RecipeError, match="calibrator"):
        QuantizeConfig(placement="fixed", calibrator="kl")
    with pytest.raises(RecipeError, match="regex"):
        QuantizeConfig(placement="fixed", exclude=("re:(",))
    with pytest.raises(RecipeError, match="valid keys"):
        config_from_dict(QuantizeConfig, {"calibrater": "minmax"})
    with pytest.raises(RecipeError, match="range"):
        QuantizeConfig(placement="fixed", overrides={"t": {"range": [2.0, 1.0]}})


# --- bad input --------------------------------------------------------------------------------------------------
def test_bad_calibration_data():
    model = qgraphs.conv_residual()
    with pytest.raises(InputMismatchError):
        quantize_model(model, {"x": np.zeros((4, 3, 8, 8), np.float32)})
    with pytest.raises(InputMismatchError):
        quantize_model(model, {"image": DATA["x"]})
    with pytest.raises(EmptyDataError):
        quantize_model(model, {"x": np.zeros((0, 3, 16, 16), np.float32)})
    bad = DATA["x"].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteDataError):
        quantize_model(model, {"x": bad})


def test_non_finite_activation_range():
    model = qgraphs.conv_residual()
    huge = np.full((4, 3, 16, 16), 3e38, np.float32)  # finite input, inf activations
    with pytest.raises(NonFiniteDataError, match="non-finite"):
        quantize_model(model, {"x": huge})


def test_old_opset_is_converted_not_refused():
    model = qgraphs.conv_residual()
    model.opset_import[0].version = 11
    q, report = quantize_model(model, DATA)
    assert q.opset_import[0].version == 13 and report["verification"]["weighted_int8"] == 4


def test_cli_quantize(tmp_path):
    src, calib, out, rep = tmp_path / "m.onnx", tmp_path / "c.npz", tmp_path / "q.onnx", tmp_path / "r.json"
    onnx.save(qgraphs.conv_residual(), src)
    np.savez(calib, **DATA)
    res = CliRunner().invoke(app, ["quantize", "--placement", "fixed", str(src), "-o", str(out), "--calib",
                                   str(calib), "--report", str(rep)])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1].startswith("QUANTIZED") and "4/4 weighted ops" in res.output
    assert out.exists() and rep.exists()
    np.savez(calib, image=DATA["x"])
    bad_out = tmp_path / "bad.onnx"
    res = CliRunner().invoke(app, ["quantize", "--placement", "fixed", str(src), "-o", str(bad_out), "--calib", str(calib)])
    assert res.exit_code == 3 and "error" in res.output and not bad_out.exists()


def test_calibration_batch_shrinks_to_the_memory_budget_and_ranges_do_not_change(caplog):
    """Per sample the calibrated activations of conv_residual take ~36 KB: a 1 MB budget allows 28 of them per
    batch; minmax ranges do not depend on the batching."""
    import logging

    model = qgraphs.conv_residual()
    cfg = QuantizeConfig(placement="fixed", verify=False, batch_size=64)
    with caplog.at_level(logging.INFO, logger="onnxcompress.quantization.insert_qdq"):
        _, small = quantize_model(model, DATA, replace(cfg, calibration_memory_mb=1))
    _, big = quantize_model(model, DATA, cfg)
    assert any("calibration batch" in r.message and "fit in 1 MB" in r.message for r in caplog.records)
    for name, t in big["tensors"].items():
        assert small["tensors"][name]["range"] == pytest.approx(t["range"], rel=1e-6), name
    with pytest.raises(RecipeError, match="calibration_memory_mb"):
        QuantizeConfig(placement="fixed", calibration_memory_mb=0)
