"""Models with external data load lazily: weights stay in their files until a pass reads them, the results equal
those of the same model with its weights inline, and no output ever refers to the input's data files."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxcompress import api
from onnxcompress.ir.external import is_lazy, model_tensors, read_array
from onnxcompress.ir.io import load_model, save_model
from onnxcompress.precision import PrecisionConfig
from onnxcompress.pruning import PruneConfig
from onnxcompress.quantization import QuantizeConfig
from support import graphs


@pytest.fixture()
def pair(tmp_path):
    """The same model twice: inline (``inline.onnx``) and with every tensor in ``ext.onnx.data``."""
    model = graphs.make(
        """
        g (float[N,128] x, float[256,128] w1, float[256] b1, float[16,256] w2, float[16] b2) => (float[N,16] y) {
            h = Gemm <transB = 1> (x, w1, b1)
            r = Relu (h)
            y = Gemm <transB = 1> (r, w2, b2)
        }
        """, ["w1", "b1", "w2", "b2"])
    save_model(model, tmp_path / "inline.onnx")
    save_model(model, tmp_path / "ext.onnx", external_data=True)
    return tmp_path / "inline.onnx", tmp_path / "ext.onnx"


def _calib(model_path, n=16):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [n if not isinstance(d, int) else d for d in inp.shape]
    shape[0] = n
    return {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def _refers_to(model: onnx.ModelProto) -> set[str]:
    return {e.value for t in model_tensors(model) for e in t.external_data if e.key == "location"}


def test_load_keeps_weights_in_their_file(pair):
    inline, ext = pair
    lazy = load_model(ext)
    assert [t.name for t in lazy.graph.initializer if is_lazy(t)] == ["w1"]  # small tensors are read at load
    assert lazy.ByteSize() < load_model(inline).ByteSize() / 2
    for a, b in zip(lazy.graph.initializer, load_model(inline).graph.initializer, strict=True):
        np.testing.assert_array_equal(read_array(a), read_array(b))


@pytest.mark.parametrize("stage", ["quantize", "prune", "weight_only", "codebook", "fp16"])
def test_a_lazy_model_gives_the_inline_models_result(pair, tmp_path, stage):
    inline, ext = pair
    calib = _calib(inline)
    out = {}
    for name, src in (("inline", inline), ("ext", ext)):
        path = tmp_path / f"{stage}-{name}.onnx"
        if stage == "quantize":
            api.quantize(src, calib, QuantizeConfig(), output=path)
        elif stage in ("weight_only", "codebook"):  # the 256x128 weight is lazy and compressed; the others stay float
            api.quantize(src, calib, QuantizeConfig(mode=stage, method="gptq" if stage == "weight_only" else "rtn"),
                         output=path)
        elif stage == "fp16":
            api.convert_precision(src, PrecisionConfig(verify_samples=16), calib, output=path)
        else:
            api.prune(src, PruneConfig(ratio=0.5, round_to=1), calib, output=path)
        out[name] = path.read_bytes()
    assert out["ext"] == out["inline"]  # byte-identical: laziness changes memory, never the result
    assert len(out["inline"]) < 0.6 * inline.stat().st_size  # and the lazy weight was really compressed


def test_outputs_never_refer_to_the_inputs_data_file(pair, tmp_path):
    inline, ext = pair
    calib = _calib(inline)
    ref = ort.InferenceSession(str(inline), providers=["CPUExecutionProvider"]).run(None, calib)[0]
    model, _ = api.prune(ext, PruneConfig(ratio=0.25, round_to=1), calib)
    save_model(model, tmp_path / "o_inline.onnx")
    save_model(model, tmp_path / "o_ext.onnx", external_data=True)
    (tmp_path / "ext.onnx.data").unlink()  # the input's weights are gone: the outputs must not need them
    inline_out = onnx.load(str(tmp_path / "o_inline.onnx"))
    assert not _refers_to(inline_out)
    assert _refers_to(onnx.load(str(tmp_path / "o_ext.onnx"), load_external_data=False)) == {"o_ext.onnx.data"}
    runs = [ort.InferenceSession(str(tmp_path / n), providers=["CPUExecutionProvider"]).run(None, calib)[0]
            for n in ("o_inline.onnx", "o_ext.onnx")]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == ref.shape and np.isfinite(runs[0]).all()


def test_weights_of_float_kept_layers_are_never_read(pair, tmp_path):
    """Placement and exclusion read shapes only: a layer kept float keeps its weight in the input's file."""
    inline, ext = pair
    model, result = api.quantize(ext, _calib(inline), QuantizeConfig(exclude=("re:^Gemm_0$",)))
    kept = [t.name for t in model.graph.initializer if is_lazy(t)]
    assert kept == ["w1"] and any(n == "Gemm_0" for n, _ in result.skipped)
    np.testing.assert_array_equal(read_array(next(t for t in model.graph.initializer if t.name == "w1")),
                                  read_array(next(t for t in load_model(inline).graph.initializer if t.name == "w1")))
