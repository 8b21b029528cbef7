"""Hard activations lowered to int8 arithmetic (quantization.lower): the integers onnxruntime computes for the
lowered graph are those of the float ``DQ -> HardSigmoid/HardSwish -> Q``, only int8 kernels run, a grid that
does not saturate at the clip is left alone, and the placement prices a hard-swish that a float Conv would fuse."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxcompress as oc
from onnxcompress.ir.edit import Names
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.quantization import insert_qdq
from onnxcompress.quantization import params as P
from onnxcompress.quantization.lower import lower_hard_activations, lowered_from
from onnxcompress.quantization.verify import optimized
from support import graphs
from support.common import ort_outputs

TYPES = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}


def _qdq_model(op: str, attrs: dict, dtype: str, out: P.QParams) -> onnx.ModelProto:
    """x -> Q -> DQ -> op -> Q -> DQ -> y (the shape QuantizeQDQPass gives a quantized unary node)."""
    xin = P.activation_params(-6.3, 6.3, dtype, False)  # a grid not aligned with the output's (fewer ties)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [], [float(qp.scale)]) for n, qp in (("xs", xin), ("ys", out))]
    inits += [helper.make_tensor(n, TYPES[dtype], [], [int(qp.zero_point)]) for n, qp in (("xz", xin), ("yz", out))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dqx"),
             helper.make_node(op, ["xd"], ["h"], name="act", **attrs),
             helper.make_node("QuantizeLinear", ["h", "ys", "yz"], ["hq"], name="qh"),
             helper.make_node("DequantizeLinear", ["hq", "ys", "yz"], ["y"], name="dqh")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _lower(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    graph = to_graph(model)
    count = lower_hard_activations(graph, {"act"}, Names(graph))
    return to_model(graph), count


def _x() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).uniform(-7, 7, (64, 64)).astype(np.float32)}


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("op,attrs", [("HardSigmoid", {}), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
                                      ("HardSigmoid", {"alpha": 0.5, "beta": -0.25}), ("HardSwish", {})])
def test_lowered_graph_computes_the_same_integers_as_the_float_op(op, attrs, dtype):
    out = P.activation_params(0.0, 1.0, dtype, False) if op == "HardSigmoid" else \
        P.activation_params(-0.375, 6.3, dtype, False)
    model = _qdq_model(op, attrs, dtype, out)
    lowered, count = _lower(model)
    assert count == 1
    onnx.checker.check_model(lowered)
    kernels = {n.op_type for n in optimized(lowered).graph.node}
    assert {"HardSigmoid", "HardSwish"}.isdisjoint(kernels)
    if dtype == "uint8":  # onnxruntime fuses int8 (signed) QLinearAdd/QLinearMul on ARM only
        assert "QLinearAdd" in kernels and "Add" not in kernels and "Mul" not in kernels
        assert ("QLinearMul" in kernels) == (op == "HardSwish")
    ref, got = ort_outputs(model, _x())["y"], ort_outputs(lowered, _x())["y"]
    steps = np.abs(ref - got) / float(out.scale)
    # the same value up to where a tie (or the int8 kernels' float arithmetic) rounds to the other neighbour
    assert steps.max() <= 1.0 + 1e-3 and steps.mean() <= 0.15, (steps.max(), steps.mean())
    exact = ort_outputs(graphs_float(op, attrs), {"x": np.clip(_x()["x"], -6.3, 6.3)})["y"]  # what x's grid holds
    assert np.abs(got - exact).max() <= 1.5 * 12.6 / 255 + 1.01 * float(out.scale)


def graphs_float(op: str, attrs: dict) -> onnx.ModelProto:
    """The float op alone (the lowered graph must stay within a grid step or two of it)."""
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    g = helper.make_graph([node], "f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_grid_that_does_not_saturate_at_the_clip_is_left_float():
    model = _qdq_model("HardSigmoid", {}, "uint8", P.activation_params(0.0, 2.0, "uint8", False))
    lowered, count = _lower(model)
    assert count == 0 and [n.op_type for n in lowered.graph.node] == [n.op_type for n in model.graph.node]
    asym = _qdq_model("HardSigmoid", {}, "int8", P.activation_params(0.0, 1.0, "int8", True))  # symmetric: zp 0
    assert _lower(asym)[1] == 0


def test_lowered_names_map_back_to_their_node():
    assert lowered_from("HardSwish.3_lowered_add") == "HardSwish.3"
    assert lowered_from("a_lowered_mul_2") == "a" and lowered_from("Conv.1") is None


def hardswish_op_convs() -> onnx.ModelProto:
    """Conv -> HardSwish (the op) -> Conv -> HardSwish -> depthwise Conv -> SE gate (GAP, Conv, HardSigmoid, Mul)."""
    return graphs.make("""
    g (float[N,3,32,32] x, float[16,3,3,3] w1, float[16] b1, float[32,16,1,1] w2, float[32] b2,
       float[32,1,3,3] w3, float[32] b3, float[32,32,1,1] w4, float[32] b4) => (float[N,32,32,32] y) {
      c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
      h1 = HardSwish (c1)
      c2 = Conv (h1, w2, b2)
      h2 = HardSwish (c2)
      c3 = Conv <pads = [1,1,1,1], group = 32> (h2, w3, b3)
      g = GlobalAveragePool (c3)
      c4 = Conv (g, w4, b4)
      s = HardSigmoid <alpha = 0.2, beta = 0.5> (c4)
      y = Mul (c3, s)
    }""", ["w1", "b1", "w2", "b2", "w3", "b3", "w4", "b4"])


def test_fixed_placement_runs_hard_activations_as_int8_kernels_only(monkeypatch):
    model = hardswish_op_convs()
    data = {"x": np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32)}
    no_check = oc.SelfCheckConfig(enabled=False)
    q, result = oc.quantize(model, data, oc.QuantizeConfig(placement="fixed"), self_check=no_check)
    kernels = [n.op_type for n in optimized(q).graph.node]
    assert {"HardSwish", "HardSigmoid", "Mul", "Add"}.isdisjoint(kernels), kernels
    assert kernels.count("QLinearAdd") == 3 and kernels.count("QLinearMul") == 3
    v = result.verification
    assert v is not None and v.coverage == 1.0
    ops = dict(v.int8_kernels)
    assert sorted(ops[n] for n in ops if n.startswith("Hard")) == ["QLinearAdd", "QLinearMul", "QLinearMul"]
    monkeypatch.setattr(insert_qdq, "lower_hard_activations", lambda *a: 0)  # the same plan, float activations
    plain, _ = oc.quantize(model, data, oc.QuantizeConfig(placement="fixed"), self_check=no_check)
    assert {"HardSwish", "HardSigmoid"} & {n.op_type for n in optimized(plain).graph.node}
    ref, out, base = (ort_outputs(m, data)["y"] for m in (model, q, plain))
    assert np.abs(out - base).mean() <= 0.02 * np.abs(ref).mean()  # lowering changes a tie here and there
    assert np.abs(out - ref).mean() <= 1.05 * np.abs(base - ref).mean()


def test_placement_prices_a_hard_swish_as_free_after_a_float_conv():
    """Float Conv + HardSwish is one fused kernel; after an int8 Conv a float HardSwish is a kernel of its own."""
    model = hardswish_op_convs()
    data = {"x": np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32)}
    _, result = oc.quantize(model, data, oc.QuantizeConfig(), self_check=oc.SelfCheckConfig(enabled=False))
    p = result.placement
    assert p is not None
    acts = [n for n in p.nodes if n.op in ("HardSwish", "HardSigmoid")]
    assert len(acts) == 3 and all(n.float_us == 0.0 and n.int8_us > 0 for n in acts)  # each its Conv's only reader
    assert all(n.float_us > 0 for n in p.nodes if n.op == "Conv")
    assert p.estimated_plan_us <= p.estimated_float_us


def test_sensitivity_proxy_reads_a_lowered_hard_sigmoid_on_its_own_grid():
    """The lowered hard-sigmoid's Q quantizes ``x + beta/alpha`` at ``scale/alpha``; a shadow node reading its
    DequantizeLinear must see HardSigmoid(x) on the [0, 1] grid, not HardSigmoid(x) * alpha."""
    from onnxcompress.data.inputs import load_input_data
    from onnxcompress.tuning.sensitivity import proxy_sqnr
    from onnxcompress.tuning.trials import TrialBuilder

    calib = load_input_data({"x": np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32)})
    builder = TrialBuilder(hardswish_op_convs(), calib, oc.QuantizeConfig(placement="fixed"))
    units = builder.units()
    gate = next(n for n, op in units.items() if op == "Mul")  # Mul(c3, HardSigmoid(...)): reads the lowered grid
    sqnr, skipped = proxy_sqnr(builder, {gate: "Mul"}, builder.build({})[0], calib)
    assert not skipped and sqnr[gate] > 25, sqnr  # alpha = 0.2 off would be 20*log10(1/0.8) ~ 2 dB


def test_sensitivity_proxy_covers_the_lowered_nodes_themselves():
    """A lowered hard activation has new node names in the quantized graph; the proxy still measures it (the float
    op on its quantized input), rather than ranking it as never fragile with neither a value nor a note."""
    from onnxcompress.data.inputs import load_input_data
    from onnxcompress.tuning.sensitivity import proxy_sqnr
    from onnxcompress.tuning.trials import TrialBuilder

    calib = load_input_data({"x": np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32)})
    builder = TrialBuilder(hardswish_op_convs(), calib, oc.QuantizeConfig(placement="fixed"))
    units = builder.units()
    hard = [n for n, op in units.items() if op in ("HardSwish", "HardSigmoid")]
    sqnr, skipped = proxy_sqnr(builder, units, builder.build({})[0], calib)
    assert len(hard) == 3 and not skipped
    assert all(20 < sqnr[n] < 80 for n in hard), sqnr  # input quantization noise only, like any unary node


@pytest.mark.parametrize("alpha,beta", [(1 / 6, 0.5), (0.2, 0.5), (1 / 6, 0.6)])
def test_placement_prices_x_times_hard_sigmoid_as_free_only_where_onnxruntime_fuses_it(alpha, beta):
    """``y * HardSigmoid(y)`` after a float Conv is fused (activation HardSwish) only for hard-swish's alpha and
    beta; with others, onnxruntime runs the HardSigmoid and the Mul as kernels of their own."""
    model = graphs.make(f"""
    g (float[N,16,16,16] x, float[32,16,3,3] w1, float[32] b1, float[32,32,1,1] w2) => (float[N,32,14,14] y) {{
      c = Conv (x, w1, b1)
      s = HardSigmoid <alpha = {alpha!r}, beta = {beta!r}> (c)
      h = Mul (c, s)
      y = Conv (h, w2)
    }}""", ["w1", "b1", "w2"])
    fused = not {"HardSigmoid", "Mul"} & {n.op_type for n in optimized(model).graph.node}
    assert fused == (alpha == 1 / 6 and beta == 0.5)
    data = {"x": np.random.default_rng(1).standard_normal((8, 16, 16, 16)).astype(np.float32)}
    _, result = oc.quantize(model, data, oc.QuantizeConfig(), self_check=oc.SelfCheckConfig(enabled=False))
    assert result.placement is not None
    acts = [n for n in result.placement.nodes if n.op in ("HardSigmoid", "Mul")]
    assert len(acts) == 2 and all((n.float_us == 0.0) == fused for n in acts), acts
