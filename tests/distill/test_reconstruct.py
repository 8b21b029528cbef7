"""distill/reconstruct: exact recovery when the pruned channels were truly redundant; bounded, seeded, recorded."""

import numpy as np
import onnx
import pytest

import graphs
from conftest import ort_outputs
from onnxcompress.distill.reconstruct import DistillConfig, reconstruct
from onnxcompress.errors import RecipeError
from onnxcompress.passes.base import PassContext

TEXT = """
g (float[N,3,10,10] x, float[6,3,3,3] w1, float[6] b1, float[4,6,3,3] w2, float[4] b2,
   float[5,16] wf, float[5] bf, int64[2] shp) => (float[N,5] y) {
    c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
    r1 = Relu (c1)
    c2 = Conv <pads = [1,1,1,1], strides = [2,2]> (r1, w2, b2)
    r2 = Relu (c2)
    p = MaxPool <kernel_shape = [2,2], strides = [2,2]> (r2)
    f = Reshape (p, shp)
    y = Gemm <transB = 1> (f, wf, bf)
}
"""


def _teacher_student():
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w1[4:], b1[4:] = w1[:2], b1[:2]  # channels 4, 5 duplicate channels 0, 1: truly redundant
    values = {"w1": w1, "b1": b1, "shp": np.array([-1, 16], np.int64)}
    teacher = graphs.make(TEXT, ["w2", "b2", "wf", "bf"], values=values)
    student = onnx.ModelProto()
    student.CopyFrom(teacher)
    for t in student.graph.initializer:  # prune channels 4, 5 of c1 (and the matching inputs of c2)
        a = onnx.numpy_helper.to_array(t)
        if t.name in ("w1", "b1"):
            t.CopyFrom(onnx.numpy_helper.from_array(a[:4], t.name))
        elif t.name == "w2":
            t.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(a[:, :4]), t.name))
    return teacher, student


def _x(n, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((n, 3, 10, 10)).astype(np.float32)}


def test_redundant_channels_recovered_exactly():
    teacher, student = _teacher_student()
    student_bytes = student.SerializeToString()
    ev = _x(16, seed=5)
    ref = ort_outputs(teacher, ev)["y"]
    before = np.abs(ort_outputs(student, ev)["y"] - ref).max()
    ctx = PassContext()
    fixed, rep = reconstruct(teacher, student, _x(64), DistillConfig(ridge=1e-9, positions=25), kept={"c1": [0, 1, 2, 3]},
                             ctx=ctx)
    after = np.abs(ort_outputs(fixed, ev)["y"] - ref).max()
    assert before > 0.1 and after < 1e-4 * np.abs(ref).max(), (before, after)
    assert [r["layer"] for r in rep["reconstructed"]] == ["c1", "c2", "y"]
    assert rep["samples"] == 64
    onnx.checker.check_model(fixed, full_check=True)
    # deterministic: same inputs and seed give byte-identical models
    again, _ = reconstruct(teacher, student, _x(64), DistillConfig(ridge=1e-9, positions=25), kept={"c1": [0, 1, 2, 3]})
    assert again.SerializeToString() == fixed.SerializeToString()
    assert student.SerializeToString() == student_bytes  # the input student is not modified


def test_unmatched_layer_is_skipped_with_reason():
    teacher, student = _teacher_student()
    # rename c2's output in the student so it has no teacher counterpart
    for n in student.graph.node:
        if n.output[0] == "c2":
            n.output[0] = "c2_renamed"
        for i, name in enumerate(n.input):
            if name == "c2":
                n.input[i] = "c2_renamed"
    ctx = PassContext()
    _, rep = reconstruct(teacher, student, _x(32), DistillConfig(), kept={"c1": [0, 1, 2, 3]}, ctx=ctx)
    reasons = {s["subject"]: s["reason"] for s in rep["skipped"]}
    assert "no teacher tensor named 'c2_renamed'" in reasons.values()


def test_config_validation():
    with pytest.raises(RecipeError, match="ridge"):
        DistillConfig(ridge=-1)
    with pytest.raises(RecipeError, match="samples"):
        DistillConfig(samples=0)
