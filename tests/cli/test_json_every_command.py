"""`--json` prints one parsable JSON document on stdout for every command (progress and notes go to stderr), and a
TensorRT-target model can be written on a CPU-only machine with --no-verify."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress.cli import app
from support import graphs
from support.graphs import teacher_student
from support.report_schema_check import report_errors

runner = CliRunner()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("json")
    model = graphs.conv_bn_head()
    onnx.save(model, d / "m.onnx")
    x = np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)
    np.savez(d / "calib.npz", x=x)
    (d / "gate.toml").write_text("[gate]\nmin_cosine = 0.9\n")
    teacher, student = teacher_student()
    onnx.save(teacher, d / "t.onnx")
    onnx.save(student, d / "s.onnx")
    np.savez(d / "ts.npz", x=np.random.default_rng(1).standard_normal((16, 3, 10, 10)).astype(np.float32))
    (d / "kept.json").write_text(json.dumps({"prune": {"kept": [{"tensor": "c1", "axis": 1, "kept": [0, 1, 2, 3]}]}}))
    return d


def commands(d):
    m, c = str(d / "m.onnx"), str(d / "calib.npz")
    fast = ["--iterations", "2", "--warmup", "0", "--no-op-profile"]
    return {
        "inspect": ["inspect", m],
        "convert": ["convert", m, "-o", str(d / "conv.onnx")],
        "prune": ["prune", m, "-o", str(d / "p.onnx"), "--ratio", "0.25"],
        "quantize": ["quantize", m, "-o", str(d / "q.onnx"), "--calib", c, "--placement", "fixed"],
        "convert-precision": ["convert-precision", m, "-o", str(d / "h.onnx"), "--calib", c],
        "sensitivity": ["sensitivity", m, "--calib", c, "--top-k", "1"],
        "distill": ["distill", str(d / "t.onnx"), str(d / "s.onnx"), "-o", str(d / "d.onnx"), "--calib",
                    str(d / "ts.npz"), "--kept", str(d / "kept.json")],
        "export-weights": ["distill", "export-weights", m, "-o", str(d / "w.npz")],
        "validate": ["validate", m, m, "--data", c],
        "profile": ["profile", m, *fast],
        "gate": ["gate", m, m, "--policy", str(d / "gate.toml"), "--data", c, "--report-dir", str(d / "g")],
        "optimize": ["optimize", m, "-o", str(d / "o.onnx"), "--calib", c, "--no-profile"],
    }


@pytest.mark.parametrize("name", ["inspect", "convert", "prune", "quantize", "convert-precision", "sensitivity", "distill",
                                  "export-weights", "attach", "validate", "profile", "gate", "optimize"])
def test_json_output_parses(case, name):
    if name == "attach":  # needs the weights export-weights wrote
        runner.invoke(app, commands(case)["export-weights"])
        args = ["distill", "attach", str(case / "m.onnx"), str(case / "w.npz"), "-o", str(case / "a.onnx")]
    else:
        args = commands(case)[name]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert isinstance(data, dict) and data
    if name in ("validate", "profile", "gate", "optimize"):
        assert report_errors(data) == []


def test_tensorrt_target_is_written_on_a_cpu_machine_with_no_verify(case, tmp_path):
    m, c, out = str(case / "m.onnx"), str(case / "calib.npz"), tmp_path / "trt.onnx"
    r = runner.invoke(app, ["quantize", m, "-o", str(out), "--calib", c, "--target", "tensorrt"])
    assert r.exit_code == 3 and not out.exists()
    assert "TensorrtExecutionProvider" in r.output and "--no-verify" in r.output and "quantize --providers" not in r.output
    r = runner.invoke(app, ["quantize", m, "-o", str(out), "--calib", c, "--target", "TensorrtExecutionProvider",
                            "--no-verify"])
    assert r.exit_code == 0, r.output
    assert "NOT VERIFIED (--no-verify)" in r.stdout and "verification deferred" in r.stderr
    model = onnx.load(out)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["onnxcompress.quantization"])
    assert meta["target"] == "tensorrt" and meta["activation_dtype"] == "int8"
    assert {n.op_type for n in model.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    r = runner.invoke(app, ["optimize", m, "-o", str(tmp_path / "o.onnx"), "--calib", c, "--no-profile",
                            "--no-verify", "--recipe", str(_recipe(tmp_path, "[quantize]\ntarget = 'tensorrt'\n"))])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o-report" / "report.json").read_text())
    assert any("verification deferred" in w for w in report["warnings"])
    assert "verification deferred" in (tmp_path / "o-report" / "report.md").read_text()


def _recipe(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_full_provider_names_are_accepted(case):
    m = str(case / "m.onnx")
    r = runner.invoke(app, ["profile", m, "--providers", "CPUExecutionProvider", "--iterations", "2", "--warmup", "0",
                            "--no-op-profile", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["profile"]["providers"] == ["CPUExecutionProvider"]
    r = runner.invoke(app, ["validate", m, m, "--data", str(case / "calib.npz"), "--providers",
                            "CUDAExecutionProvider"])
    assert r.exit_code == 3 and "not available" in r.output and "onnxruntime-gpu instead of onnxruntime" in r.output
    r = runner.invoke(app, ["profile", m, "--providers", "OpenVINOExecutionProvider"])
    assert r.exit_code == 3 and "CUDAExecutionProvider" in r.output  # the hint lists the accepted names
