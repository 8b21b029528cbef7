"""distill/attach: export-weights round-trips; every attach error case is listed in one clear error."""

import json

import numpy as np
import onnx
import pytest

import onnxcompress as oc
from onnxcompress.distillation.weights_io import (
    export_weights,
    load_mapping,
    read_weights,
    save_npz_atomic,
    write_safetensors,
)
from onnxcompress.errors import DataError
from support import graphs
from support.common import ort_outputs


def _x():
    return {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}


def test_export_then_attach_roundtrip_npz_safetensors_onnx(tmp_path):
    model = graphs.conv_bn_head()
    weights = export_weights(model)
    assert set(weights) == {t.name for t in model.graph.initializer}
    trained = {k: (v * 0.5).astype(v.dtype) for k, v in weights.items()}
    ref_model = onnx.ModelProto()
    ref_model.CopyFrom(model)
    for t in ref_model.graph.initializer:
        t.CopyFrom(onnx.numpy_helper.from_array(trained[t.name], t.name))
    ref = ort_outputs(ref_model, _x())["y"]
    save_npz_atomic(trained, tmp_path / "w.npz")
    write_safetensors(trained, tmp_path / "w.safetensors")
    (tmp_path / "w.onnx").write_bytes(ref_model.SerializeToString())
    for name in ("w.npz", "w.safetensors", "w.onnx"):
        attached, rep = oc.attach(model, tmp_path / name, data=_x())
        np.testing.assert_array_equal(ort_outputs(attached, _x())["y"], ref)
        assert list(rep.attached) == sorted(weights) and rep.validated_on == "arrays"
    assert onnx.numpy_helper.to_array(model.graph.initializer[0]).tolist() == weights["w1"].tolist()  # input untouched


def test_mapping_file(tmp_path):
    model = graphs.conv_bn_head()
    weights = {f"torch.{k}": v for k, v in export_weights(model).items()}
    (tmp_path / "map.json").write_text(json.dumps({k: f"torch.{k}" for k in export_weights(model)}))
    attached, rep = oc.attach(model, weights, tmp_path / "map.json")
    np.testing.assert_array_equal(ort_outputs(attached, _x())["y"], ort_outputs(model, _x())["y"])


def test_every_problem_listed_at_once():
    model = graphs.conv_bn_head()
    weights = export_weights(model)
    del weights["w1"]
    weights["w2"] = np.zeros((6, 4, 3, 3), np.float32)
    weights["wf"] = weights["wf"].astype(np.float64)
    weights["stray"] = np.zeros(3, np.float32)
    with pytest.raises(DataError) as e:
        oc.attach(model, weights)
    msg = str(e.value)
    assert "missing: w1 [4, 3, 3, 3]" in msg
    assert "wrong shape: w2: model [6, 4, 1, 1], file [6, 4, 3, 3]" in msg
    assert "wrong dtype: wf: model float32, file float64" in msg
    assert "extra (not in the model): stray" in msg
    assert "export-weights" in e.value.hint


def test_bad_weight_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_weights(tmp_path / "nope.npz")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported weights file type"):
        read_weights(tmp_path / "w.txt")
    (tmp_path / "w.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad")
    with pytest.raises(DataError, match="cannot read weights"):
        read_weights(tmp_path / "w.safetensors")
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        load_mapping(tmp_path / "m.json")


def test_mapping_names_that_match_nothing_are_an_error():
    model = graphs.conv_bn_head()
    with pytest.raises(DataError, match="mapping names \\['nope'\\]"):
        oc.attach(model, export_weights(model), {"nope": "w1"})
