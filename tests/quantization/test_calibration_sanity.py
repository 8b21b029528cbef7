"""Calibration-data sanity: a handful of extreme values or a constant input give a warning in the result, the
report and on the console; with strict they are an error that writes nothing."""

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import onnxcompress as oc
from onnxcompress.cli import app
from onnxcompress.errors import DataError
from support import qgraphs
from support.stages import quantize_model


def _spiky(n=64):
    x = np.random.default_rng(0).uniform(0, 1, (n, 3, 16, 16)).astype(np.float32)
    x[5, 0, 3, 3] = 1e30  # one corrupt pixel
    return {"x": x}


def test_one_extreme_pixel_is_warned_about():
    _, report = quantize_model(qgraphs.conv_residual(), _spiky(), oc.QuantizeConfig(placement="fixed", verify=False))
    assert len(report["warnings"]) == 1 and "a few extreme values set the quantization range" in report["warnings"][0]
    assert "1e+30" in report["warnings"][0]


def test_constant_input_is_warned_about_and_clean_data_is_not():
    zeros = {"x": np.zeros((16, 3, 16, 16), np.float32)}
    _, report = quantize_model(qgraphs.conv_residual(), zeros, oc.QuantizeConfig(placement="fixed", verify=False))
    assert any("is constant (0)" in w for w in report["warnings"])
    _, clean = quantize_model(qgraphs.conv_residual(), qgraphs.data((3, 16, 16)), oc.QuantizeConfig(placement="fixed",
                                                                                                    verify=False))
    assert "warnings" not in clean


def test_strict_makes_it_an_error():
    with pytest.raises(DataError, match="extreme values"):
        quantize_model(qgraphs.conv_residual(), _spiky(), oc.QuantizeConfig(placement="fixed", verify=False, strict=True))


def test_cli_warns_on_stderr_and_strict_exits_3_writing_nothing(tmp_path):
    onnx.save(qgraphs.conv_residual(), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **_spiky())
    runner = CliRunner()
    r = runner.invoke(app, ["quantize", "--placement", "fixed", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"),
                            "--calib", str(tmp_path / "c.npz")])
    assert r.exit_code == 0 and "warning: input 'x'" in r.output
    r = runner.invoke(app, ["quantize", "--placement", "fixed", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "s.onnx"),
                            "--calib", str(tmp_path / "c.npz"), "--strict"])
    assert r.exit_code == 3 and "extreme values" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "s.onnx").exists()


def test_optimize_report_carries_the_warning():
    _, report = oc.optimize(qgraphs.conv_residual(), calib=_spiky(),
                            recipe=oc.Recipe.from_dict({"validate": {"profile": {"enabled": False}}}))
    assert any("extreme values" in w for w in report.warnings)
