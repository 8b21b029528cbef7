"""Transformer placement: no Q/DQ pair on a weighted MatMul output that only float ops consume (it runs as
MatMulIntegerToFloat), the 2-D MatMul+Add exception, the Erf-GELU Div kept for ORT's Gelu fusion, and the bundled
ViT's linear-only configuration."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.ir.graph import to_graph
from onnxcompress.passes.base import PassContext
from onnxcompress.passes.fold import FoldConstantsPass
from onnxcompress.quantization import QuantizeConfig
from onnxcompress.runtime.session import SessionOptions, optimized_model
from support import graphs
from support.common import bundled_data, bundled_model, ort_outputs
from support.stages import quantize_model


def mlp_block():
    """3-D tokens: LayerNorm -> MatMul+bias -> Erf GELU -> MatMul+bias -> residual Add (a transformer MLP)."""
    return graphs.make("""
    g (float[N,6,8] x, float[8] g1, float[8] be, float[8,16] w1, float[16] b1, float[16,8] w2, float[8] b2,
       float s2, float one, float half) => (float[N,6,8] y) {
      n = LayerNormalization <axis=-1> (x, g1, be)
      m1 = MatMul (n, w1)
      h1 = Add (m1, b1)
      d = Div (h1, s2)
      e = Erf (d)
      e1 = Add (e, one)
      g = Mul (h1, e1)
      a = Mul (g, half)
      m2 = MatMul (a, w2)
      h2 = Add (m2, b2)
      y = Add (x, h2)
    }""", ["g1", "be", "w1", "b1", "w2", "b2"],
        values={"s2": np.array(np.sqrt(2), np.float32), "one": np.array(1, np.float32),
                "half": np.array(0.5, np.float32)})


def linear_2d():
    return graphs.make("""
    g (float[N,8] x, float[8,4] w, float[4] b) => (float[N,4] y) {
      m = MatMul (x, w)
      y = Add (m, b)
    }""", ["w", "b"])


def _data(shape, n=64, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)}


def test_float_only_outputs_have_no_qdq_and_run_as_matmul_integer_to_float():
    model = mlp_block()
    data = _data((6, 8))
    q, report = quantize_model(model, data, QuantizeConfig(placement="fixed"))
    assert {d["tensor"] for d in report["float_outputs"]} == {"m1", "m2"}
    quantized = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert "m1" not in quantized and "m2" not in quantized
    v = report["verification"]
    assert v["kernel_ops"].get("MatMulIntegerToFloat") == 2 and v["weighted_int8"] == v["weighted_total"] == 2
    ref, out = ort_outputs(model, data)["y"], ort_outputs(q, data)["y"]
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    q2, _ = quantize_model(model, data, QuantizeConfig(placement="fixed"))
    assert q2.SerializeToString() == q.SerializeToString()


def test_gelu_div_is_kept_so_ort_fuses_gelu():
    model = mlp_block()
    graph = FoldConstantsPass()(to_graph(model), PassContext()).graph
    assert [n.op for n in graph.nodes].count("Div") == 1  # the x / sqrt(2) feeding Erf stays a Div
    q, _ = quantize_model(model, _data((6, 8)), QuantizeConfig(placement="fixed", verify=False, exclude=("Mul",)))  # linear-only
    ops = {n.op_type for n in optimized_model(q, SessionOptions(providers="cpu", opt_level="all")).graph.node}
    assert ops & {"Gelu", "BiasGelu", "FastGelu"} and "Erf" not in ops


def test_2d_matmul_add_keeps_its_output_pair():
    """ORT would turn a 2-D MatMul+Add into a float Gemm before the QDQ fusions: keep QLinearMatMul there."""
    q, report = quantize_model(linear_2d(), _data((8,)), QuantizeConfig(placement="fixed"))
    assert report["float_outputs"] == []
    assert report["verification"]["weighted_int8"] == 1


def test_bundled_vit_linear_only_preset():
    from onnxcompress.data.inputs import load_input_data
    from onnxcompress.ir.io import load_model
    from onnxcompress.tuning.trials import TrialBuilder

    path = bundled_model("vit_mnist")
    if not path.exists():
        pytest.skip("vit_mnist is not built")
    model = load_model(path)
    builder = TrialBuilder(model, load_input_data(bundled_data("vit_mnist", "calib")).limited(128),
                           QuantizeConfig(placement="fixed"))
    presets = builder.presets()
    assert set(presets) == {"linear-only", "dynamic"}
    mode, choice = presets["linear-only"]
    assert mode == "static" and choice and all(p == "float" for p in choice.values())
    assert {n.rsplit("/", 1)[-1].split("_")[0] for n in choice} >= {"Softmax", "MatMul"}
    q, result = builder.build(choice, verify=True)
    report = result.to_dict()
    kernels = report["verification"]["kernel_ops"]
    assert set(kernels) == {"MatMulIntegerToFloat", "QGemm", "QLinearConv"} and kernels["MatMulIntegerToFloat"] == 18
    assert report["verification"]["weighted_int8"] == report["verification"]["weighted_total"]
    ev = np.load(bundled_data("vit_mnist", "eval"))
    x = ev["input"][:300]
    ref, out = ort_outputs(model, {"input": x})["logits"], ort_outputs(q, {"input": x})["logits"]
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.98
