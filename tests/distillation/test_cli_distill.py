"""distill CLI: `distill TEACHER STUDENT`, export-weights -> attach round trip, error exits leave nothing behind."""

import json

import numpy as np
import onnx
from typer.testing import CliRunner

from onnxcompress.cli import app
from support import graphs
from support.common import ort_outputs
from support.graphs import teacher_student as _teacher_student

runner = CliRunner()


def _files(p):
    return sorted(x.name for x in p.iterdir())


def test_distill_default_command_reconstructs(tmp_path):
    teacher, student = _teacher_student()
    (tmp_path / "t.onnx").write_bytes(teacher.SerializeToString())
    (tmp_path / "s.onnx").write_bytes(student.SerializeToString())
    x = np.random.default_rng(0).standard_normal((64, 3, 10, 10)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    (tmp_path / "kept.json").write_text(json.dumps({"prune": {"kept": [{"tensor": "c1", "axis": 1, "kept": [0, 1, 2, 3]}]}}))
    r = runner.invoke(app, ["distill", str(tmp_path / "t.onnx"), str(tmp_path / "s.onnx"), "-o", str(tmp_path / "o.onnx"),
                            "--calib", str(tmp_path / "calib.npz"), "--kept", str(tmp_path / "kept.json"),
                            "--ridge", "1e-9"])
    assert r.exit_code == 0, r.output
    assert "reconstructed 3 layers" in r.output
    out = onnx.load(str(tmp_path / "o.onnx"))
    feeds = {"x": x[:8]}
    ref = ort_outputs(teacher, feeds)["y"]
    assert np.abs(ort_outputs(out, feeds)["y"] - ref).max() < 1e-3 * np.abs(ref).max()


def test_export_attach_roundtrip_and_errors(tmp_path):
    m = tmp_path / "m.onnx"
    m.write_bytes(graphs.conv_bn_head().SerializeToString())
    r = runner.invoke(app, ["distill", "export-weights", str(m), "-o", str(tmp_path / "w.npz")])
    assert r.exit_code == 0 and "17 tensors" in r.output, r.output
    r = runner.invoke(app, ["distill", "attach", str(m), str(tmp_path / "w.npz"), "-o", str(tmp_path / "a.onnx")])
    assert r.exit_code == 0, r.output
    before = _files(tmp_path)
    w = dict(np.load(tmp_path / "w.npz"))
    w["w1"] = w["w1"][:2]
    np.savez(tmp_path / "bad.npz", **w)
    before = _files(tmp_path)
    r = runner.invoke(app, ["distill", "attach", str(m), str(tmp_path / "bad.npz"), "-o", str(tmp_path / "b.onnx")])
    assert r.exit_code == 3 and "wrong shape: w1" in r.output and "Traceback" not in r.output
    assert _files(tmp_path) == before  # nothing written
    r = runner.invoke(app, ["distill", str(m), str(m), "-o", str(tmp_path / "c.onnx"), "--calib", str(tmp_path / "no.npz")])
    assert r.exit_code == 3 and "not found" in r.output
    assert _files(tmp_path) == before
