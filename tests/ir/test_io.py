"""ir/io: loading failures are typed errors with hints; saving is atomic; the input is never modified."""

import os

import numpy as np
import onnx
import pytest

from onnxcompress.errors import (
    ExternalDataError,
    ModelFormatError,
    ModelNotFoundError,
    OutputPathError,
    UnsupportedModelError,
)
from onnxcompress.ir.external import read_array
from onnxcompress.ir.io import convert_opset, load_model, require_opset, save_model
from support import graphs


def _write(tmp_path, model, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def test_load_roundtrip(tmp_path):
    p = _write(tmp_path, graphs.conv_bn_head())
    m = load_model(p)
    assert [n.op_type for n in m.graph.node][:2] == ["Conv", "BatchNormalization"]


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found") as e:
        load_model(tmp_path / "nope.onnx")
    assert e.value.exit_code == 3 and e.value.hint


@pytest.mark.parametrize("content", [b"", b"hello, this is not onnx at all", b"\x08\x07\x12\x03abc\xff\xff\xff"])
def test_not_onnx(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelFormatError) as e:
        load_model(p)
    assert "re-export" in e.value.hint or "0 bytes" in e.value.hint


def test_truncated(tmp_path):
    data = graphs.conv_bn_head().SerializeToString()
    p = tmp_path / "trunc.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        load_model(p)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelFormatError, match="directory"):
        load_model(tmp_path)


def test_ir_version_too_new(tmp_path):
    m = graphs.conv_bn_head()
    m.ir_version = onnx.IR_VERSION + 5
    with pytest.raises(UnsupportedModelError, match="IR version") as e:
        load_model(_write(tmp_path, m))
    assert "upgrade" in e.value.hint


def test_external_data_roundtrip_and_missing(tmp_path):
    m = graphs.conv_bn_head()
    out = save_model(m, tmp_path / "ext.onnx", external_data=True)
    assert (tmp_path / "ext.onnx.data").exists()
    loaded = load_model(out)
    w = {t.name: read_array(t) for t in loaded.graph.initializer}
    ref = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    for k in ref:
        np.testing.assert_array_equal(w[k], ref[k])
    os.unlink(tmp_path / "ext.onnx.data")
    with pytest.raises(ExternalDataError, match="missing") as e:
        load_model(out)
    assert "ext.onnx.data" in e.value.hint
    assert sorted(os.listdir(tmp_path)) == ["ext.onnx"]  # no temp leftovers


def test_save_is_atomic_and_input_untouched(tmp_path, monkeypatch):
    src = _write(tmp_path, graphs.conv_bn_head(), "in.onnx")
    before = src.read_bytes()
    model = load_model(src)

    def boom(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(model, tmp_path / "out.onnx")
    assert sorted(os.listdir(tmp_path)) == ["in.onnx"]
    assert src.read_bytes() == before


def test_unwritable_output(tmp_path):
    m = graphs.conv_bn_head()
    with pytest.raises(OutputPathError, match="does not exist") as e:
        save_model(m, tmp_path / "no" / "such" / "dir" / "m.onnx")
    assert "mkdir" in e.value.hint
    with pytest.raises(OutputPathError, match="directory"):
        save_model(m, tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions
            return  # running as root: permissions are not enforced; the checks above still ran
        with pytest.raises(OutputPathError, match="not writable"):
            save_model(m, ro / "m.onnx")
    finally:
        ro.chmod(0o700)


def test_old_opset_offers_conversion():
    m = onnx.parser.parse_model(
        '<ir_version: 7, opset_import: ["" : 11]> g (float[2,3] x) => (float[2,3] y) { y = Relu (x) }'
    )
    with pytest.raises(UnsupportedModelError, match="opset >= 13") as e:
        require_opset(m, 13)
    assert "convert" in e.value.hint
    converted = convert_opset(m, 17)
    require_opset(converted, 13)
