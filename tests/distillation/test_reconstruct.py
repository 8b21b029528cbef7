"""distill/reconstruct: exact recovery when the pruned channels were truly redundant; bounded, seeded, recorded."""

import numpy as np
import onnx
import pytest

from onnxcompress.distillation import DistillConfig
from onnxcompress.errors import InputMismatchError, RecipeError
from onnxcompress.passes.base import PassContext
from support import graphs
from support.common import ort_outputs
from support.graphs import teacher_student as _teacher_student
from support.stages import reconstruct


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


def test_idempotent_second_run_changes_nothing():
    teacher, student = _teacher_student()
    cfg = DistillConfig(ridge=1e-9, positions=25)
    fixed, _ = reconstruct(teacher, student, _x(64), cfg, kept={"c1": [0, 1, 2, 3]})
    again, rep = reconstruct(teacher, fixed, _x(64), cfg, kept={"c1": [0, 1, 2, 3]})
    ev = _x(8, seed=9)
    np.testing.assert_allclose(ort_outputs(again, ev)["y"], ort_outputs(fixed, ev)["y"], rtol=1e-4, atol=1e-5)


def test_teacher_with_other_inputs_is_refused():
    teacher, student = _teacher_student()
    student.graph.input[0].name = "other"
    for n in student.graph.node:
        n.input[:] = ["other" if i == "x" else i for i in n.input]
    with pytest.raises(InputMismatchError, match="teacher inputs"):
        reconstruct(teacher, student, {"other": _x(4)["x"]}, DistillConfig())


def test_pruned_model_carries_its_kept_channels_and_distill_needs_no_kept_flag():
    import onnxcompress as oc
    from onnxcompress.passes.artifacts import KEPT_CHANNELS_KEY, KeptChannels

    teacher = graphs.mlp_bn()
    x = np.random.default_rng(0).standard_normal((128, 16)).astype(np.float32)
    pruned, result = oc.prune(teacher, oc.PruneConfig(ratio=0.3))
    record = KeptChannels.from_model(pruned)
    assert record is not None and record.kept == result.kept_channels().kept
    assert KEPT_CHANNELS_KEY in {p.key for p in pruned.metadata_props}
    recon, rep = oc.distill(teacher, pruned, {"x": x}, oc.DistillConfig(samples=128))  # no kept= given
    assert rep.reconstructed
    ev = np.random.default_rng(1).standard_normal((32, 16)).astype(np.float32)
    ref = ort_outputs(teacher, {"x": ev})["y"]
    err = lambda m: float(np.abs(ort_outputs(m, {"x": ev})["y"] - ref).mean())
    assert err(recon) < 0.5 * err(pruned)


def test_student_without_record_is_a_clear_error():
    import onnxcompress as oc

    teacher = graphs.mlp_bn()
    pruned, _ = oc.prune(teacher, oc.PruneConfig(ratio=0.3))
    del pruned.metadata_props[:]
    x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    with pytest.raises(InputMismatchError, match="no kept-channel record") as e:
        oc.distill(teacher, pruned, {"x": x})
    assert "--kept" in e.value.hint


BRANCHES = """
g (float[N,3,10,10] x, float[6,3,3,3] wa, float[6] ba, float[4,6,3,3] wb1, float[4] bb1, float[4,6,3,3] wb2,
   float[4] bb2, float[2,4,1,1] wc, float[2] bc) => (float[N,2,10,10] y) {
    a = Conv <pads = [1, 1, 1, 1]> (x, wa, ba)
    r = Relu (a)
    b1 = Conv <pads = [1, 1, 1, 1]> (r, wb1, bb1)
    b2 = Conv <pads = [1, 1, 1, 1]> (r, wb2, bb2)
    s = Add (b1, b2)
    y = Conv (s, wc, bc)
}
"""


def _branches():
    """Two parallel convs read one pruned tensor: refitting them needs one student pass, not two."""
    rng = np.random.default_rng(3)
    wa, ba = rng.standard_normal((6, 3, 3, 3)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    wa[4:], ba[4:] = wa[:2], ba[:2]
    teacher = graphs.make(BRANCHES, ["wb1", "bb1", "wb2", "bb2", "wc", "bc"], values={"wa": wa, "ba": ba})
    student = onnx.ModelProto()
    student.CopyFrom(teacher)
    for t in student.graph.initializer:
        a = onnx.numpy_helper.to_array(t)
        if t.name in ("wa", "ba"):
            t.CopyFrom(onnx.numpy_helper.from_array(a[:4], t.name))
        elif t.name in ("wb1", "wb2"):
            t.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(a[:, :4] * 0.8), t.name))
    return teacher, student


def test_shared_passes_give_the_layer_by_layer_result():
    teacher, student = _branches()
    results = {}
    for memory_mb in (1024, 1):  # 1 MB holds the rows of two layers: more teacher passes, waves split at windows
        ctx = PassContext()
        out, rep = reconstruct(teacher, student, _x(256), DistillConfig(ridge=1e-9, positions=100, memory_mb=memory_mb),
                               kept={"a": [0, 1, 2, 3]}, ctx=ctx)
        assert [r["layer"] for r in rep["reconstructed"]] == ["a", "b1", "b2", "y"]
        stats = next(r.stats for r in ctx.records if r.name == "ReconstructPass")
        results[memory_mb] = (out.SerializeToString(), stats["teacher_passes"], stats["student_passes"])
    assert results[1024][1:] == (1, 3)  # one teacher pass; b1 and b2 share the student's pass
    assert results[1][1] > 1 and results[1][2] == 4
    assert results[1][0] == results[1024][0]  # byte-identical to refitting one layer at a time
    ev = _x(8, seed=4)
    ref = ort_outputs(teacher, ev)["y"]
    fixed = onnx.load_from_string(results[1024][0])
    assert np.abs(ort_outputs(fixed, ev)["y"] - ref).max() < 1e-3 * np.abs(ref).max()
