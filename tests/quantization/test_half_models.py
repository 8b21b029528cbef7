"""Half-precision models: quantized in float32 inside, signature kept, valid ONNX, int8 kernels, close to the
half-precision model."""

import numpy as np
import onnx
import pytest

from onnxcompress.passes import PassContext, apply_to_model
from onnxcompress.quantization.upcast import UpcastHalfPass
from support import qgraphs
from support.common import ort_outputs
from support.stages import quantize_model


def _to_half(model: onnx.ModelProto) -> onnx.ModelProto:
    """conv_residual with float16 weights, input and output (as an fp16 export would have them)."""
    half = onnx.ModelProto()
    half.CopyFrom(model)
    for t in half.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT:
            t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t).astype(np.float16), t.name))
    for vi in list(half.graph.input) + list(half.graph.output):
        vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.checker.check_model(half, full_check=True)
    return half


def test_upcast_is_exact_and_keeps_the_signature():
    half = _to_half(qgraphs.conv_residual())
    wide, result = apply_to_model(half, UpcastHalfPass(), PassContext())
    assert result.modified and [i.type for i in wide.graph.input] == [i.type for i in half.graph.input]
    assert [o.type.tensor_type.elem_type for o in wide.graph.output] == [onnx.TensorProto.FLOAT16]
    x = qgraphs.data((3, 16, 16), n=8)["x"].astype(np.float16)
    np.testing.assert_allclose(ort_outputs(wide, {"x": x})["y"].astype(np.float32),
                               ort_outputs(half, {"x": x})["y"].astype(np.float32), rtol=2e-2, atol=2e-2)
    again, second = apply_to_model(wide, UpcastHalfPass(), PassContext())
    assert not second.modified  # idempotent


def test_fp16_model_quantizes_to_a_valid_int8_model():
    half = _to_half(qgraphs.conv_residual())
    data = {"x": qgraphs.data((3, 16, 16))["x"].astype(np.float16)}
    q, report = quantize_model(half, data)
    onnx.checker.check_model(q, full_check=True)
    assert q.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert q.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert report["verification"]["weighted_int8"] == report["verification"]["weighted_total"] == 4
    assert all(n.op_type != "QuantizeLinear" or n.input[0] for n in q.graph.node)
    x = data["x"][:16]
    ref = ort_outputs(half, {"x": x})["y"].astype(np.float32)
    out = ort_outputs(q, {"x": x})["y"].astype(np.float32)
    cos = (ref * out).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    assert cos.mean() > 0.99 and (ref.argmax(1) == out.argmax(1)).mean() >= 0.9


def test_float32_models_are_untouched():
    model = qgraphs.conv_residual()
    out, result = apply_to_model(model, UpcastHalfPass(), PassContext())
    assert not result.modified and [n.op_type for n in out.graph.node] == [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("dtype", [onnx.TensorProto.BFLOAT16])
def test_bf16_cast_inside_a_float32_model_is_retargeted(dtype):
    from support import graphs

    model = graphs.make(f"""
    g (float[N,4] x, float[4,4] w) => (float[N,4] y) {{
      h = Cast <to = {dtype}> (x)
      f = Cast <to = 1> (h)
      y = MatMul (f, w)
    }}""", ["w"])
    q, report = quantize_model(model, {"x": np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)})
    assert not any(n.op_type == "Cast" and any(a.name == "to" and a.i == dtype for a in n.attribute)
                   for n in q.graph.node)
    onnx.checker.check_model(q, full_check=True)
