"""GatePolicy parsing and evaluation: every set criterion is checked, unmeasured ones fail with a reason."""

from dataclasses import replace

import pytest

from onnxcompress.errors import RecipeError
from onnxcompress.validation.compare import Comparison
from onnxcompress.validation.config import Tolerance
from onnxcompress.validation.evaluate import TaskMetrics, ValidationResult
from onnxcompress.validation.gate import GatePolicy, Measured, evaluate_gate, load_policy
from onnxcompress.validation.metrics import Fidelity
from onnxcompress.validation.profile import BatchTiming, ProfileResult
from onnxcompress.validation.speed import estimate

VALIDATION = ValidationResult(
    samples=100, primary_output="logits", labels="labels", metrics=("top1",),
    task=TaskMetrics({"top1": 0.990}, {"top1": 0.975}),
    fidelity={"logits": Fidelity(100, 0.985, 0.999, 0.9, 25.0, 0.2, 0.01)},
    comparison={"logits": Comparison(1e-3, 1e-3, "elemwise", 1000, 0.2, 0.5, 0.01, 0.02, 0, False, 0.2, 0.5,
                                     mismatches=7)})
PROFILE = ProfileResult(["CPUExecutionProvider"], 0, "all", 1, 10, {}, (
    BatchTiming(1, {"reference": {"p99_ms": 5.0}, "candidate": {"p99_ms": 2.0}}, 2.5, 2.5,
                estimate([2.4, 2.5, 2.6, 2.5, 2.5], 0.9, 10, "spread 8% <= 10%")),))


def test_load_policy_toml(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text('[gate]\nmax_accuracy_drop = 0.01\nmin_speedup = 1.5\n[gate.tolerances.""]\natol = 0.1\n')
    policy = load_policy(path)
    assert policy.max_accuracy_drop == 0.01 and policy.min_speedup == 1.5
    assert policy.tolerances == {"": Tolerance(atol=0.1)}
    path.write_text("[gate]\nmax_acuracy_drop = 0.01\n")
    with pytest.raises(RecipeError, match="max_acuracy_drop") as e:
        load_policy(path)
    assert "max_accuracy_drop" in e.value.hint
    path.write_text("max_accuracy_drop = 0.01\n")
    with pytest.raises(RecipeError, match=r"no \[gate\]"):
        load_policy(path)


@pytest.mark.parametrize("kwargs", [{"max_accuracy_drop": 2}, {"min_speedup": 0}, {"min_cosine": 1.5},
                                    {"min_int8_kernel_coverage": -0.1}, {"max_size_mb": "big"}])
def test_bad_thresholds_are_recipe_errors(kwargs):
    with pytest.raises(RecipeError):
        GatePolicy(**kwargs)


def test_all_criteria_pass_and_fail():
    measured = Measured(VALIDATION, PROFILE, candidate_size_mb=3.0, int8_kernel_coverage=0.9)
    ok = GatePolicy(max_accuracy_drop=0.02, max_relative_accuracy_drop=0.02, min_top1_agreement=0.98,
                    min_cosine=0.99, min_sqnr_db=20, min_speedup=2.0, max_p99_ms=3.0, max_size_mb=4.0,
                    min_int8_kernel_coverage=0.8)
    result = evaluate_gate(ok, measured)
    assert result.passed and len(result.criteria) == 9 and result.reasons == []
    bad = GatePolicy(max_accuracy_drop=0.01, min_top1_agreement=0.99, min_speedup=3.0, max_size_mb=1.0,
                     tolerances={"": Tolerance(1e-3, 1e-3)})
    result = evaluate_gate(bad, measured)
    assert not result.passed
    names = [c.name for c in result.criteria if not c.passed]
    assert names == ["max_accuracy_drop", "min_top1_agreement", "tolerance[logits]", "min_speedup", "max_size_mb"]
    assert "0.015 > 0.01" in result.reasons[0]
    assert "would pass with atol=0.2" in result.reasons[2]
    assert result.to_dict()["failed"] == result.reasons


def test_unmeasured_criteria_fail_with_reason():
    no_labels = replace(VALIDATION, task=None)
    policy = GatePolicy(max_accuracy_drop=0.01, min_speedup=1.1, min_int8_kernel_coverage=0.5)
    result = evaluate_gate(policy, Measured(no_labels, None))
    assert not result.passed
    assert [c.value for c in result.criteria] == [None, None, None]
    assert "needs labels" in result.reasons[0] and "not profiled" in result.reasons[1]
    with pytest.raises(RecipeError, match="checks nothing"):  # an empty policy is a policy error, never a pass
        GatePolicy()
