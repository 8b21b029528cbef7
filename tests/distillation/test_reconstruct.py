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
