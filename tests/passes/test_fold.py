"""passes/fold.py: constant folding, Identity/Div rewrites, Conv+Add -> bias, hard-swish -> x * HardSigmoid(x).

Each pass is proven on structure (op counts), idempotence (modified is False on a second run) and numerics
(ORT outputs before/after within 1e-5 relative) on fixtures, resnet_mnist and the third-party ppocr_cls.
"""

from collections import Counter

import numpy as np
import onnx
import pytest

from onnxcompress.errors import RecipeError
from onnxcompress.ir.io import convert_opset, load_model
from onnxcompress.ops.folders import FOLDERS
from onnxcompress.passes import CleanupPass, InferShapesPass, LiftConstantsPass, PassContext, Sequential, apply_to_model
from onnxcompress.passes.fold import FoldBiasAddPass, FoldConstantsPass, FoldPadIntoConvPass, RewriteHardSwishPass
from onnxcompress.passes.fuse import FoldBatchNormPass
from onnxcompress.passes.preprocess import preprocess_passes
from support import graphs
from support.common import assert_close_rel, bundled_data, bundled_model, ort_outputs, zoo_member
from support.graphs import hardswish_convs


def preprocess_model(model, ctx=None):
    out, result = apply_to_model(model, preprocess_passes(), ctx)
    return out, result.stats

PPOCR = zoo_member("ppocr_cls")


def _ops(model):
    return Counter(n.op_type for n in model.graph.node)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def shape_arith():
    """A static-shape Shape/Gather/Unsqueeze/Concat/Reshape chain, constant arithmetic, Identity, Div by a constant."""
    return graphs.make("""
    g (float[2,3,4] x, float[3] c, float[3] d) => (float[2,12] y, float[2,3,4] z) {
      s = Shape (x)
      i0 = Constant <value = int64[1] {0}> ()
      b = Gather <axis = 0> (s, i0)
      m1 = Constant <value = int64[1] {-1}> ()
      shp = Concat <axis = 0> (b, m1)
      r = Reshape (x, shp)
      cd = Mul (c, d)
      cd1 = Sub (cd, c)
      ax = Constant <value = int64[2] {0, 2}> ()
      cu = Unsqueeze (cd1, ax)
      ct = Cast <to = 1> (cu)
      st = Constant <value = float {4.0}> ()
      k = Range (st, st, st)
      one = ConstantOfShape <value = float[1] {1.0}> (s)
      t1 = Add (x, ct)
      t2 = Mul (t1, one)
      t3 = Identity (t2)
      six = Constant <value = float {6.0}> ()
      z = Div (t3, six)
      ry = Identity (r)
      y = Relu (ry)
    }""", ["c", "d"])


def test_folds_static_shape_chain_and_constant_arithmetic():
    model = shape_arith()
    ctx = PassContext()
    out, result = apply_to_model(model, FoldConstantsPass(), ctx)
    ops = _ops(out)
    for op in ("Shape", "Gather", "Concat", "Unsqueeze", "Cast", "Sub", "ConstantOfShape", "Range", "Identity", "Div"):
        assert ops[op] == 0, (op, ops)
    assert ops["Reshape"] == 1 and ops["Add"] == 1 and ops["Mul"] == 2 and ops["Relu"] == 1
    assert result.stats["identity_removed"] == 2 and result.stats["div_to_mul"] == 1 and result.stats["folded"] >= 9
    onnx.checker.check_model(out, full_check=True)
    x = _x((2, 3, 4))
    a, b = ort_outputs(model, {"x": x}), ort_outputs(out, {"x": x})
    assert set(a) == set(b) == {"y", "z"}
    for k in a:
        assert_close_rel(a[k], b[k], 1e-6)
    actions = Counter(d.action for d in ctx.decisions)
    assert actions["folded"] == result.stats["folded"] and actions["removed"] == 2 and actions["rewritten"] == 1
    again, result2 = apply_to_model(out, FoldConstantsPass())
    assert not result2.modified and again.SerializeToString() == apply_to_model(out, FoldConstantsPass())[0].SerializeToString()


def test_size_cap_and_unknown_ops_are_recorded_not_folded():
    model = graphs.make("""
    g (float[4] x) => (float[4] w) {
      shp = Constant <value = int64[2] {512, 1024}> ()
      big = ConstantOfShape <value = float[1] {1.0}> (shp)
      k = Constant <value = float[4] {1.0, 2.0, 3.0, 4.0}> ()
      e = Exp (k)
      rs = ReduceSum <keepdims = 0> (big)
      y = Add (x, e)
      w = Add (y, rs)
    }""", [], check=False)
    ctx = PassContext()
    out, result = apply_to_model(model, FoldConstantsPass(max_bytes=1 << 16), ctx)
    kept = {d.subject: d.reason for d in ctx.decisions if d.action == "kept"}
    assert any("would grow the model" in r for r in kept.values()), kept
    assert any(r == "no folding rule for Exp" for r in kept.values()), kept
    assert _ops(out)["ConstantOfShape"] == 1 and _ops(out)["Exp"] == 1
    x = _x((4,))
    np.testing.assert_allclose(ort_outputs(out, {"x": x})["w"], x + np.exp([1, 2, 3, 4]) + 512 * 1024, rtol=1e-6)
    assert result.stats["skipped"] >= 1 and "Exp" not in FOLDERS
    with pytest.raises(RecipeError):
        FoldConstantsPass(max_bytes=-1)


def test_identity_feeding_a_graph_output_is_bypassed_by_renaming_the_producer():
    model = graphs.make("""
    g (float[2,3] x) => (float[2,3] y) {
      r = Relu (x)
      y = Identity (r)
    }""", [])
    out, result = apply_to_model(model, FoldConstantsPass())
    assert _ops(out) == Counter({"Relu": 1}) and [o.name for o in out.graph.output] == ["y"]
    x = _x((2, 3))
    np.testing.assert_array_equal(ort_outputs(out, {"x": x})["y"], np.maximum(x, 0))
    passthrough = graphs.make("g (float[2,3] x) => (float[2,3] y) { y = Identity (x) }", [])
    ctx = PassContext()
    same, result = apply_to_model(passthrough, FoldConstantsPass(), ctx)
    assert not result.modified and _ops(same)["Identity"] == 1 and ctx.decisions[0].action == "kept"


def test_hardswish_rewrite_and_bias_add_fold():
    model = hardswish_convs()
    ctx = PassContext()
    seq = Sequential(FoldConstantsPass(), RewriteHardSwishPass(), FoldBiasAddPass(), CleanupPass())
    out, result = apply_to_model(model, seq, ctx)
    assert _ops(out) == Counter({"Conv": 3, "HardSigmoid": 2, "Mul": 2}), _ops(out)
    assert result.stats["RewriteHardSwishPass"] == {"rewritten": 2}
    assert result.stats["FoldBiasAddPass"] == {"folded": 1}
    for n in out.graph.node:
        if n.op_type == "HardSigmoid":
            attrs = {a.name: a.f for a in n.attribute}
            assert attrs["alpha"] == pytest.approx(1 / 6) and attrs["beta"] == pytest.approx(0.5)
    onnx.checker.check_model(out, full_check=True)
    x = _x((2, 3, 8, 8)) * 3
    assert_close_rel(ort_outputs(model, {"x": x})["y"], ort_outputs(out, {"x": x})["y"], 1e-5)
    assert any(d.action == "rewritten" and d.pass_name == "RewriteHardSwishPass" for d in ctx.decisions)
    _, again = apply_to_model(out, seq)
    assert not again.modified


def test_bias_add_kept_when_not_per_channel():
    model = graphs.make("""
    g (float[N,3,4,4] x, float[5,3,1,1] w, float[1,5,4,4] c) => (float[N,5,4,4] y) {
      v = Conv (x, w)
      y = Add (v, c)
    }""", ["w", "c"])
    ctx = PassContext()
    out, result = apply_to_model(model, FoldBiasAddPass(), ctx)
    assert not result.modified and _ops(out)["Add"] == 1
    assert "not per output channel" in ctx.decisions[0].reason


def _padded_convs(mode: str = "constant", value: float = 0.0, pads=(0, 0, 1, 2, 0, 0, 1, 0)):
    """Two explicit Pads, each before a Conv (the second Conv has pads of its own); an int8 path in between."""
    vals = {"p": np.array(pads, np.int64), "v": np.array(value, np.float32)}
    return graphs.make(f"""
    g (float[N,3,8,8] x, float[8,3,3,3] w1, float[8] b1, float[8,8,3,3] w2, int64[8] p, float v) => (float[N,8,H,W] y) {{
      xp = Pad <mode="{mode}"> (x, p, v)
      c = Conv (xp, w1, b1)
      r = Relu (c)
      rp = Pad <mode="{mode}"> (r, p, v)
      y = Conv <pads=[1,1,1,1]> (rp, w2)
    }}""", ["w1", "b1", "w2"], values=vals, check=False)


def test_zero_pad_folds_into_the_conv_pads_with_identical_outputs():
    model = _padded_convs()
    ctx = PassContext()
    out, result = apply_to_model(model, FoldPadIntoConvPass(), ctx)
    assert result.modified and result.stats == {"folded": 2} and _ops(out) == Counter({"Conv": 2, "Relu": 1})
    pads = [list(next(a.ints for a in n.attribute if a.name == "pads")) for n in out.graph.node if n.op_type == "Conv"]
    assert pads == [[1, 2, 1, 0], [2, 3, 2, 1]]  # [h_begin, w_begin, h_end, w_end] + the Conv's own [1, 1, 1, 1]
    x = _x((2, 3, 8, 8))
    ref, got = ort_outputs(model, {"x": x})["y"], ort_outputs(out, {"x": x})["y"]
    assert ref.shape == got.shape == (2, 8, 10, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert sum(d.action == "folded" for d in ctx.decisions) == 2
    _, again = apply_to_model(out, FoldPadIntoConvPass())
    assert not again.modified


@pytest.mark.parametrize("kind, reason", [
    ({"mode": "reflect"}, "not constant"), ({"value": 1.0}, "not a constant 0"),
    ({"pads": (0, 1, 1, 1, 0, 0, 1, 1)}, "batch or channel"), ({"pads": (0, 0, -1, 0, 0, 0, 0, 0)}, "crops")])
def test_pads_that_are_not_a_zero_spatial_border_stay_with_the_reason(kind, reason):
    model = _padded_convs(**kind)
    ctx = PassContext()
    out, result = apply_to_model(model, FoldPadIntoConvPass(), ctx)
    assert not result.modified and _ops(out)["Pad"] == 2
    assert all(d.action == "kept" and reason in d.reason for d in ctx.decisions) and len(ctx.decisions) == 2


def test_quantized_padded_convs_have_no_float_pad_between_int8_convs():
    import onnxcompress as oc
    from onnxcompress.runtime.session import SessionOptions, optimized_model

    model, x = _padded_convs(), _x((8, 3, 8, 8))
    q, _ = oc.quantize(model, {"x": x}, oc.QuantizeConfig(placement="fixed"))
    kernels = Counter(n.op_type for n in optimized_model(q, SessionOptions(providers="cpu")).graph.node)
    assert kernels["Pad"] == 0 and kernels["QLinearConv"] == 2, kernels
    unfolded, _ = oc.quantize(model, {"x": x}, oc.QuantizeConfig(placement="fixed", rewrites=False))
    assert Counter(n.op_type for n in optimized_model(unfolded, SessionOptions(providers="cpu")).graph.node)["Pad"] == 2
    ref, got = ort_outputs(model, {"x": x})["y"], ort_outputs(q, {"x": x})["y"]
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def _ppocr():
    if not (PPOCR / "model.onnx").exists():
        pytest.skip("third-party ppocr_cls not fetched (python models/third_party/fetch.py)")
    return load_model(PPOCR / "model.onnx"), np.load(PPOCR / "eval.npz")["x"][:32]


QUANT_PRE = (LiftConstantsPass(), InferShapesPass(), FoldConstantsPass(), FoldBatchNormPass(), RewriteHardSwishPass(),
             FoldBiasAddPass(), CleanupPass())


def test_ppocr_cls_folds_to_fewer_nodes_with_identical_outputs():
    model, x = _ppocr()
    converted = convert_opset(model, 17)
    ctx = PassContext()
    out, result = apply_to_model(converted, Sequential(*QUANT_PRE), ctx)
    before, after = _ops(converted), _ops(out)
    assert result.stats["FoldConstantsPass"]["folded"] >= 18  # the SE blocks' Reshape(constant) offsets
    assert result.stats["RewriteHardSwishPass"]["rewritten"] == before["Div"] == 18
    assert after["Div"] == after["Clip"] == after["Identity"] == 0 and after["Reshape"] < before["Reshape"]
    assert sum(after.values()) < 0.6 * (sum(before.values()) - before["Constant"])
    onnx.checker.check_model(out, full_check=True)
    a = next(iter(ort_outputs(model, {"x": x}).values()))
    b = next(iter(ort_outputs(out, {"x": x}).values()))
    assert_close_rel(a, b, 1e-5)
    _, again = apply_to_model(out, Sequential(*QUANT_PRE))
    assert not again.modified


def test_preprocess_model_folds_and_keeps_numerics():
    model = load_model(bundled_model("resnet_mnist"))
    ctx = PassContext()
    out, stats = preprocess_model(model, ctx)
    assert "FoldConstantsPass" in stats
    x = np.load(bundled_data("resnet_mnist", "eval"))["input"][:64]
    assert_close_rel(ort_outputs(model, {"input": x})["logits"], ort_outputs(out, {"input": x})["logits"], 1e-5)
    out2, stats2 = preprocess_model(out)
    assert {k: stats2["FoldConstantsPass"][k] for k in ("folded", "identity_removed", "div_to_mul")} == {
        "folded": 0, "identity_removed": 0, "div_to_mul": 0}
    if (PPOCR / "model.onnx").exists():
        pp, xp = _ppocr()
        pout, pstats = preprocess_model(pp)
        assert pstats["FoldConstantsPass"]["folded"] >= 18 and _ops(pout)["Div"] == 0
        a = next(iter(ort_outputs(pp, {"x": xp}).values()))
        assert_close_rel(a, next(iter(ort_outputs(pout, {"x": xp}).values())), 1e-5)
