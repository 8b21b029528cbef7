"""passes: the contract (records, Sequential, error wrapping) and the first real passes.

Each pass is proven on structure (op counts), idempotence (modified is False on a second run) and numerics
(ORT outputs before/after within 1e-5 relative).
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import pytest

from onnxcompress.errors import PassError, UserError
from onnxcompress.ir.io import load_model
from onnxcompress.passes import (
    CleanupPass,
    FoldBatchNormPass,
    InferShapesPass,
    LiftConstantsPass,
    Pass,
    PassContext,
    PassResult,
    Sequential,
    apply_to_model,
)
from support import graphs
from support.common import BUNDLED, assert_close_rel, bundled_data, bundled_model, ort_outputs


def _ops(model):
    return Counter(n.op_type for n in model.graph.node)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@dataclass(frozen=True)
class _Counted:
    n: int


class _Count(Pass):
    def __init__(self, fail=False, user=False):
        self.fail, self.user = fail, user

    def call(self, graph, ctx):
        if self.fail:
            raise (UserError("bad recipe", hint="fix it") if self.user else ValueError("boom"))
        previous = ctx.get(_Counted)
        ctx.put(_Counted((previous.n if previous else 0) + 1))
        return PassResult(graph, True, {"n": len(graph.nodes)})


def test_contract_records_and_sequential_wraps_failure():
    ctx = PassContext()
    model = graphs.conv_bn_head()
    _, result = apply_to_model(model, Sequential(_Count(), CleanupPass(), _Count()), ctx)
    assert result.modified and [r.name for r in ctx.records] == ["_Count", "CleanupPass", "_Count"]  # no Sequential
    assert ctx.records[0].stats == {"n": 9} and ctx.records[0].seconds >= 0
    assert ctx.get(_Counted) == _Counted(2) and ctx.get(PassResult) is None  # typed artifacts, fetched by class
    with pytest.raises(PassError, match=r"pass _Count failed \(after: CleanupPass\): boom") as e:
        apply_to_model(model, Sequential(CleanupPass(), _Count(fail=True)))
    assert e.value.exit_code == 4 and isinstance(e.value.__cause__, ValueError)
    with pytest.raises(UserError) as e:  # a user error passes through unchanged: one message, exit 3
        apply_to_model(model, Sequential(_Count(fail=True, user=True)))
    assert e.value.exit_code == 3 and e.value.hint == "fix it" and not isinstance(e.value, PassError)


def test_sequential_times_are_not_double_counted():
    ctx = PassContext(stage="demo")
    apply_to_model(graphs.conv_bn_head(), Sequential(Sequential(_Count(), _Count()), CleanupPass()), ctx)
    assert [r.name for r in ctx.records] == ["_Count", "_Count", "CleanupPass"]
    assert {r.stage for r in ctx.records} == {"demo"}


def test_fold_bn_structure_numerics_idempotence():
    model = graphs.conv_bn_head()
    ctx = PassContext()
    folded, result = apply_to_model(model, FoldBatchNormPass(), ctx)
    assert result.stats == {"folded": 3} and _ops(folded)["BatchNormalization"] == 0
    assert _ops(folded)["Conv"] == 2 and _ops(folded)["Gemm"] == 1
    onnx.checker.check_model(folded, full_check=True)
    x = _x((3, 3, 8, 8))
    assert_close_rel(ort_outputs(model, {"x": x})["y"], ort_outputs(folded, {"x": x})["y"])
    again, result2 = apply_to_model(folded, FoldBatchNormPass())
    assert not result2.modified
    assert again.SerializeToString() == apply_to_model(folded, FoldBatchNormPass())[0].SerializeToString()
    assert {d.action for d in ctx.decisions} == {"folded"}


def test_fold_bn_grouped_convtranspose():
    model = graphs.convtranspose_bn()
    folded, result = apply_to_model(model, FoldBatchNormPass())
    assert result.stats["folded"] == 1 and "BatchNormalization" not in _ops(folded)
    x = _x((2, 4, 5, 5))
    assert_close_rel(ort_outputs(model, {"x": x})["y"], ort_outputs(folded, {"x": x})["y"])


def test_fold_bn_records_why_kept():
    ctx = PassContext()
    kept, result = apply_to_model(graphs.bn_kept(), FoldBatchNormPass(), ctx)
    assert not result.modified and _ops(kept)["BatchNormalization"] == 2
    reasons = sorted(d.reason for d in ctx.decisions)
    assert any("producer is Relu" in r for r in reasons) and any("graph output" in r for r in reasons)


def test_cleanup_removes_dead_code_and_sorts():
    model = graphs.dead_code()
    cleaned, result = apply_to_model(model, CleanupPass())
    assert result.modified and result.stats == {"removed_nodes": 1, "removed_initializers": 1}
    assert [n.op_type for n in cleaned.graph.node] == ["MatMul", "Relu"]
    onnx.checker.check_model(cleaned, full_check=True)
    _, again = apply_to_model(cleaned, CleanupPass())
    assert not again.modified
    x = _x((2, 4))
    np.testing.assert_array_equal(ort_outputs(cleaned, {"x": x})["y"], np.maximum(x @ onnx.numpy_helper.to_array(
        model.graph.initializer[0]), 0))


def test_infer_shapes_fills_tensors():
    model = graphs.conv_bn_head()
    ctx = PassContext()
    shaped, result = apply_to_model(model, InferShapesPass(), ctx)
    assert result.modified
    vi = {v.name: v for v in shaped.graph.value_info}
    assert [d.dim_value or d.dim_param for d in vi["c1"].type.tensor_type.shape.dim] == ["N", 4, 8, 8]
    _, again = apply_to_model(shaped, InferShapesPass())
    assert not again.modified


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_fold_and_cleanup_are_neutral(name):
    model = load_model(bundled_model(name))
    ctx = PassContext()
    out, result = apply_to_model(model, Sequential(InferShapesPass(), FoldBatchNormPass(), CleanupPass()), ctx)
    onnx.checker.check_model(out, full_check=True)
    if name == "resnet_mnist":
        assert _ops(model)["BatchNormalization"] > 0 and _ops(out)["BatchNormalization"] == 0
    x = np.load(bundled_data(name, "eval"))["input"][:64]
    a, b = ort_outputs(model, {"input": x})["logits"], ort_outputs(out, {"input": x})["logits"]
    assert_close_rel(a, b, 1e-5)
    assert (a.argmax(1) == b.argmax(1)).all()


def test_lift_constants_to_initializers():
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2,3] x) => (float[2,3] y, float[3] k) {
            w = Constant <value = float[3,3] {1,0,0, 0,2,0, 0,0,3}> ()
            s = Constant <value_float = 0.5> ()
            k = Constant <value_floats = [1.0, 2.0, 3.0]> ()
            h = MatMul (x, w)
            y = Mul (h, s)
        }"""
    )
    ctx = PassContext()
    lifted, result = apply_to_model(model, LiftConstantsPass(), ctx)
    assert result.stats == {"lifted": 2} and _ops(lifted) == Counter({"MatMul": 1, "Mul": 1, "Constant": 1})
    assert sorted(t.name for t in lifted.graph.initializer) == ["s", "w"]
    assert [d.reason for d in ctx.decisions] == ["graph output"]
    x = _x((2, 3))
    np.testing.assert_array_equal(ort_outputs(model, {"x": x})["y"], ort_outputs(lifted, {"x": x})["y"])
    _, again = apply_to_model(lifted, LiftConstantsPass())
    assert not again.modified


def test_fold_bn_through_channel_concat():
    model = graphs.concat_bn()
    ctx = PassContext()
    folded, result = apply_to_model(model, FoldBatchNormPass(), ctx)
    assert result.stats["folded"] == 1 and "BatchNormalization" not in _ops(folded)
    x = _x((2, 3, 6, 6))
    assert_close_rel(ort_outputs(model, {"x": x})["y"], ort_outputs(folded, {"x": x})["y"])
    onnx.checker.check_model(folded, full_check=True)
