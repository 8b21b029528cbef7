"""inspect: MACs and parameter counts against hand-computed values; the CLI's exit codes and JSON schema."""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress.cli import app
from onnxcompress.inspection import INSPECT_SCHEMA, inspect_model
from onnxcompress.ir.cost import count_macs, count_parameters
from support import graphs
from support.common import BUNDLED, bundled_model

runner = CliRunner()


def test_macs_hand_computed():
    m = graphs.macs_fixture()
    # Conv 1x8x8x8 out * 3*3*3 = 13824; grouped Conv 1x8x3x3 * 2*3*3 = 1296; ConvTranspose 1x8x3x3 in * 4*2*2 = 1152;
    # Gemm 1x10 * 8 = 80; MatMul 2x16x4 * 16 = 2048
    macs = count_macs(m)
    assert macs["by_op_type"] == {"Conv": 13824 + 1296, "ConvTranspose": 1152, "Gemm": 80, "MatMul": 2048}
    assert macs["total"] == 18400 and macs["input_shapes"] == {"x": [1, 3, 8, 8]}
    batch4 = count_macs(m, {"x": [4, 3, 8, 8]})
    assert batch4["total"] == 4 * (13824 + 1296 + 1152 + 80) + 2048


def test_parameters_hand_computed():
    p = count_parameters(graphs.macs_fixture())
    # w1 8*3*3*3 + w2 8*2*3*3 + w3 8*4*2*2 + wf 10*8 + a 2*16*16 + b 2*16*4 floats; shp: 2 int64
    floats = 216 + 144 + 128 + 80 + 512 + 128
    assert p["by_dtype"] == {"float32": {"count": floats, "bytes": 4 * floats}, "int64": {"count": 2, "bytes": 16}}
    assert p["total"] == floats + 2 and p["bytes"] == 4 * floats + 16


def _save(tmp_path, model, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def test_cli_inspect_json(tmp_path):
    p = _save(tmp_path, graphs.macs_fixture())
    r = runner.invoke(app, ["inspect", str(p), "--json", "--shape", "x:2x3x8x8"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["schema"] == INSPECT_SCHEMA
    assert set(info) >= {"model", "inputs", "outputs", "nodes", "op_histogram", "parameters", "macs"}
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["N", 3, 8, 8]}]
    assert info["macs"]["total"] == 2 * (13824 + 1296 + 1152 + 80) + 2048
    assert info["model"]["file_bytes"] == p.stat().st_size and info["model"]["opset"] == 17
    assert info["op_histogram"]["Conv"] == 2


def test_cli_inspect_human(tmp_path):
    r = runner.invoke(app, ["inspect", str(_save(tmp_path, graphs.conv_bn_head()))])
    assert r.exit_code == 0 and "MACs" in r.output and "BatchNormalization 3" in r.output


@pytest.mark.parametrize("args,code,msg", [
    (["inspect", "missing.onnx"], 3, "not found"),
    (["inspect", "{bad}"], 3, "not a valid ONNX model"),
    (["inspect", "{good}", "--shape", "x:axb"], 3, "bad shape override"),
    (["inspect", "{good}", "--shape", "y:1x3x8x8"], 3, "unknown input"),
    (["inspect", "{good}", "--shape", "x:1x4x8x8"], 3, "static dim 3"),
    (["inspect"], 2, "Missing argument"),
    (["frobnicate"], 2, "No such command"),
])
def test_cli_inspect_errors(tmp_path, args, code, msg):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage bytes")
    good = _save(tmp_path, graphs.conv_bn_head())
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(bad=bad, good=good) for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == code, r.output
    assert msg in r.output
    if code == 3:
        assert "Traceback" not in r.output and "hint:" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_version_is_fast_and_lazy():
    import subprocess
    import sys

    code = "import sys, onnxcompress.cli; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("onnxcompress ")


@pytest.mark.parametrize("name", BUNDLED)
def test_inspect_bundled(name):
    info = inspect_model(bundled_model(name), {"input": [32, 1, 28, 28]})
    one = inspect_model(bundled_model(name))
    assert info["inputs"][0]["name"] == "input" and info["outputs"][0]["name"] == "logits"
    assert info["macs"]["nodes_with_unknown_shape"] == []
    assert info["macs"]["total"] == 32 * one["macs"]["total"] > 0
    model = onnx.load(str(bundled_model(name)))
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert info["parameters"]["total"] >= n_params
    assert info["model"]["opset"] == 17


def test_cli_convert_old_opset(tmp_path):
    m = onnx.parser.parse_model(
        '<ir_version: 7, opset_import: ["" : 11]> g (float[2,3] x) => (float[2,3] y) {'
        ' w = Constant <value = float[3,3] {1,0,0,0,1,0,0,0,1}> () y = MatMul (x, w) }'
    )
    src = _save(tmp_path, m, "old.onnx")
    before = src.read_bytes()
    r = runner.invoke(app, ["convert", str(src), "-o", str(tmp_path / "new.onnx"), "--opset", "17"])
    assert r.exit_code == 0 and "opset 11 -> 17, 1 Constant nodes lifted" in r.output, r.output
    new = onnx.load(str(tmp_path / "new.onnx"))
    assert new.opset_import[0].version == 17 and [n.op_type for n in new.graph.node] == ["MatMul"]
    assert src.read_bytes() == before
    r = runner.invoke(app, ["convert", str(src), "-o", str(tmp_path / "nodir" / "x.onnx")])
    assert r.exit_code == 3 and "does not exist" in r.output
