"""QDQ insertion per op rule: structure (Q/DQ counts, dtypes, axes), ORT int8 kernels, numerics vs fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxcompress.quantization import QuantizeConfig
from onnxcompress.runtime.session import SessionOptions, make_session, run
from support import qgraphs
from support.common import ort_outputs
from support.stages import quantize_model

KERNELS = {
    "conv_residual": {"QLinearConv": 3, "QLinearAdd": 1, "QLinearGlobalAveragePool": 1, "QGemm": 1},
    "concat_pools": {"QLinearConv": 2, "QLinearConcat": 1, "QLinearAveragePool": 1, "MatMulIntegerToFloat": 1},
    "attention": {"QGemm": 1, "QLinearMatMul": 3, "QLinearSoftmax": 1, "MatMulIntegerToFloat": 1},
    "mul_sigmoid": {"QLinearConv": 1, "QLinearSigmoid": 1, "QLinearMul": 1},
}


@pytest.fixture(scope="module", params=sorted(qgraphs.FIXTURES))
def quantized(request):
    make, shape = qgraphs.FIXTURES[request.param]
    model = make()
    data = qgraphs.data(shape)
    qmodel, report = quantize_model(model, data, QuantizeConfig(placement="fixed"))
    return request.param, model, data, qmodel, report


def _ops(model, op):
    return [n for n in model.graph.node if n.op_type == op]


def _init(model, name):
    return next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_structure_dtypes_and_axes(quantized):
    name, model, _, qmodel, report = quantized
    onnx.checker.check_model(qmodel, full_check=True)
    qs, dqs = _ops(qmodel, "QuantizeLinear"), _ops(qmodel, "DequantizeLinear")
    n_act = len(report["tensors"])
    n_weights = sum(1 for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                    and n.input[1] in {t.name for t in model.graph.initializer})
    n_bias = sum(1 for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2)
    assert len(qs) == n_act, "one QuantizeLinear per quantized activation"
    assert len(dqs) == n_act + n_weights + n_bias
    for q in qs:  # target cpu: uint8 asymmetric activations
        assert _init(qmodel, q.input[2]).dtype == np.uint8
    for dq in dqs:
        zp = _init(qmodel, dq.input[2]) if dq.input[2] in {t.name for t in qmodel.graph.initializer} else None
        if zp is not None and zp.dtype == np.int8:  # weights: symmetric, per-channel
            assert not zp.any() and _init(qmodel, dq.input[1]).ndim == 1
            assert {a.name: a.i for a in dq.attribute}.get("axis") in (0, 1)
        if zp is not None and zp.dtype == np.int32:  # bias: zero point 0, scale s_in * s_w
            assert not zp.any()
    assert not report["skipped"]


def test_bias_scale_is_input_times_weight_scale():
    model = qgraphs.conv_residual()
    qmodel, report = quantize_model(model, qgraphs.data((3, 16, 16)))
    conv = next(n for n in qmodel.graph.node if n.op_type == "Conv")
    producers = {o: n for n in qmodel.graph.node for o in n.output}
    x_dq, w_dq, b_dq = (producers[i] for i in conv.input)
    s_in = _init(qmodel, x_dq.input[1])
    s_w = _init(qmodel, w_dq.input[1])
    s_b = _init(qmodel, b_dq.input[1])
    np.testing.assert_allclose(s_b, (s_in.astype(np.float64) * s_w).astype(np.float32), rtol=1e-6)
    assert _init(qmodel, b_dq.input[0]).dtype == np.int32


def test_every_quantizable_node_is_an_int8_kernel(quantized):
    name, _, _, _, report = quantized
    v = report["verification"]
    assert v["coverage"] == 1.0 and report["coverage"] == 1.0
    assert v["weighted_int8"] == v["weighted_total"] > 0
    for op, count in KERNELS[name].items():
        assert v["kernel_ops"].get(op) == count, (op, v["kernel_ops"])
    assert not v["float_nodes"]
    # no redundant pair: only the graph input's QuantizeLinear (and a graph output's DequantizeLinear) remain
    assert v["qdq_left"].get("QuantizeLinear", 0) == 1
    assert v["qdq_left"].get("DequantizeLinear", 0) <= 1


def test_relu_and_clip_absorbed_with_zero_point_zero():
    _, report = quantize_model(qgraphs.conv_residual(), qgraphs.data((3, 16, 16)))
    assert {a["node"] for a in report["absorbed"]} == {"Relu_1", "Clip_3", "Relu_7"}
    for t in ("r1", "r2", "r3"):
        assert report["tensors"][t]["zero_point"] == 0 and report["tensors"][t]["range"][0] >= 0
    assert report["tensors"]["r2"]["range"][1] <= 6.0
    assert "c1" not in report["tensors"]  # the Conv output before the Relu gets no Q/DQ of its own


def test_concat_and_passthrough_share_one_scale():
    _, report = quantize_model(qgraphs.concat_pools(), qgraphs.data((4, 8, 8)))
    t = report["tensors"]
    assert t["ra"]["scale"] == t["rb"]["scale"] == t["k"]["scale"]
    assert t["t"]["scale"] == t["r"]["scale"] == t["p"]["scale"]
    assert t["t"]["zero_point"] == t["p"]["zero_point"]


def _output_tolerance(report, output, y):
    """Error budget from the scales: every quantized activation can add half a step, propagated with gain ~1 in
    units of the output's step (the output's own scale, or a 255-level grid over the output's range)."""
    step = report["tensors"][output]["scale"] if output in report["tensors"] else float(np.ptp(y)) / 255
    return len(report["tensors"]) * step


def test_numerics_vs_fp32(quantized):
    name, model, data, qmodel, report = quantized
    feeds = {"x": data["x"][:16]}
    out = model.graph.output[0].name
    ref = ort_outputs(model, feeds)[out]
    emulated = ort_outputs(qmodel, feeds)[out]  # QDQ graph run in float (no fusion)
    sess = make_session(qmodel, SessionOptions(providers="cpu", opt_level="all", threads=1))
    int8 = run(sess, feeds)[out]  # the fused int8 kernels
    tol = _output_tolerance(report, out, ref)
    assert np.abs(emulated - ref).max() <= tol, (np.abs(emulated - ref).max(), tol)
    assert np.abs(int8 - ref).max() <= tol, (np.abs(int8 - ref).max(), tol)
    assert np.abs(int8 - ref).max() > 0  # it really is quantized


def test_deterministic_and_input_untouched():
    model = qgraphs.conv_residual()
    before = model.SerializeToString()
    data = qgraphs.data((3, 16, 16))
    a, _ = quantize_model(model, data)
    b, _ = quantize_model(model, data)
    assert a.SerializeToString() == b.SerializeToString()
    assert model.SerializeToString() == before


def test_int8_target_is_symmetric():
    qmodel, report = quantize_model(qgraphs.conv_residual(), qgraphs.data((3, 16, 16)),
                                    QuantizeConfig(placement="fixed", target="tensorrt", verify=False))
    for q in _ops(qmodel, "QuantizeLinear"):
        zp = _init(qmodel, q.input[2])
        assert zp.dtype == np.int8 and zp == 0
    assert "verification" not in report


def test_per_tensor_weights():
    qmodel, _ = quantize_model(qgraphs.conv_residual(), qgraphs.data((3, 16, 16)),
                               QuantizeConfig(placement="fixed", per_channel=False, verify=False))
    for dq in _ops(qmodel, "DequantizeLinear"):
        assert _init(qmodel, dq.input[1]).ndim == 0
