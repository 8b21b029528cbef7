"""A speed gate that can be trusted: A/B rounds, the median ratio and a distribution-free bound; min_speedup is
judged on the bound, so noise injected through the profiler's clock cannot make a model pass against itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxcompress import api
from onnxcompress.errors import RecipeError
from onnxcompress.validation.config import ProfileConfig, ValidateConfig
from onnxcompress.validation.gate import GatePolicy
from onnxcompress.validation.speed import ab_rounds, median_bounds, order_statistic_rank
from support import graphs


class FakeClock:
    """Time that only moves when the timed functions say so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


class NoisyClock:
    """The real clock plus a seeded, heavy-tailed delay (log-normal, ~1 ms, far above the model's own time) added
    at every reading: a busy shared machine."""

    def __init__(self, seed: int):
        import time

        self.real = time.perf_counter
        self.rng = np.random.default_rng(seed)
        self.offset = 0.0

    def __call__(self) -> float:
        self.offset += float(np.exp(self.rng.normal(-7.0, 1.0)))
        return self.real() + self.offset


def test_order_statistic_bounds():
    assert [order_statistic_rank(n, 0.9) for n in (1, 4, 5, 10, 40)] == [0, 0, 1, 2, 15]
    assert median_bounds([3.0, 1.0, 2.0, 5.0, 4.0], 0.9) == (1.0, 5.0, True)
    lower, upper, exact = median_bounds([1.0, 2.0, 3.0], 0.9)
    assert (lower, upper, exact) == (1.0, 3.0, False)  # too few rounds: the extremes
    values = list(np.random.default_rng(0).lognormal(0.0, 0.3, 400))
    lo, hi, _ = median_bounds(values, 0.9)
    assert lo < float(np.median(values)) < hi and (hi - lo) < 0.15


def _fns(clock: FakeClock, ref_s: float, cand_s: float, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    return {"reference": lambda: clock.spend(ref_s * (1 + noise * rng.exponential())),
            "candidate": lambda: clock.spend(cand_s * (1 + noise * rng.exponential()))}


def test_rounds_stop_when_the_interval_is_narrow_and_when_the_budget_is_spent():
    clock = FakeClock()
    config = ProfileConfig(iterations=10, min_rounds=5, max_rounds=40, max_spread=0.05)
    samples, est = ab_rounds(_fns(clock, 2e-3, 1e-3, 0.01, 0), config, clock=clock)
    assert est.rounds <= 10 and est.stopped.startswith("spread") and est.exact
    assert est.lower <= est.median <= est.upper and est.median == pytest.approx(2.0, rel=0.02)
    assert len(samples["reference"]) == 2 * est.rounds  # 2 runs per model and round
    clock = FakeClock()
    noisy = ProfileConfig(iterations=10, min_rounds=5, max_rounds=40, max_spread=0.01, time_budget_s=0.2)
    _, est = ab_rounds(_fns(clock, 2e-3, 1e-3, 1.0, 1), noisy, clock=clock)
    assert est.stopped.startswith("time budget") and 5 <= est.rounds < 40


def test_the_bound_judges_min_speedup_and_not_slower():
    clock = FakeClock()
    config = ProfileConfig(iterations=10, min_rounds=5, max_rounds=30, max_spread=0.02)
    _, fast = ab_rounds(_fns(clock, 2e-3, 1e-3, 0.3, 2), config, clock=clock)
    assert fast.lower > 1.5  # a real 2x survives noise
    _, slow = ab_rounds(_fns(clock, 0.7e-3, 1e-3, 0.05, 3), config, clock=clock)
    assert slow.upper < 1.0
    with pytest.raises(RecipeError, match="max_rounds"):
        ProfileConfig(min_rounds=10, max_rounds=5)
    with pytest.raises(RecipeError, match="confidence"):
        ProfileConfig(confidence=1.0)


def test_gate_bound_rejects_a_model_against_itself_under_clock_noise(tmp_path):
    """Real sessions of the same model, noise injected through the profiler's clock: single rounds show
    'speed-ups' far above min_speedup (what a one-p50 gate would have passed), the bound does not."""
    model = graphs.conv_bn_head()
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    profile = ProfileConfig(batch_sizes=(1,), warmup=2, iterations=10, op_profile=False, min_rounds=5,
                            max_rounds=30, time_budget_s=60.0)
    config = ValidateConfig(providers="cpu", threads=1, profile=profile)
    report = api.gate(model, model, {"x": x}, GatePolicy(min_speedup=1.2), config=config, clock=NoisyClock(seed=7))
    est = report.profile.batches[0].speedup
    assert est is not None and max(est.ratios) > 1.2 and min(est.ratios) < 1 / 1.2  # the noise is real
    crit = {c.name: c for c in report.gate.criteria}
    assert crit["min_speedup"].passed is False and crit["min_speedup"].value == est.lower < 1.2
    assert "lower bound" in crit["min_speedup"].message and f"over {est.rounds} rounds" in crit["min_speedup"].message
    assert report.passed is False and ">= " in report.verdict and "x at 90%" in report.verdict
    assert math.isfinite(est.spread) and est.spread > profile.max_spread


def test_optimize_default_gate_fails_a_slower_model():
    """The default gate of optimize includes not_slower: a candidate shown to be slower fails it."""
    from onnxcompress.validation.evaluate import ValidationResult
    from onnxcompress.validation.gate import Measured, default_policy, evaluate_gate
    from onnxcompress.validation.profile import BatchTiming, ProfileResult
    from onnxcompress.validation.speed import estimate

    validation = ValidationResult(10, "y", None, (), None, {}, {})
    policy = default_policy(validation, profiled=True)
    assert policy.not_slower and policy.fidelity_floors and policy.max_accuracy_drop is None
    assert default_policy(validation, profiled=False).not_slower is None
    slow = estimate([0.72, 0.74, 0.75, 0.73, 0.76], 0.9, 10, "spread")
    profile = ProfileResult(["CPUExecutionProvider"], 0, "all", 1, 10, {}, (
        BatchTiming(32, {"reference": {}, "candidate": {}}, 0.74, 0.74, slow),))
    result = evaluate_gate(GatePolicy(not_slower=True), Measured(validation, profile))
    assert not result.passed and "SLOWER than the reference" in result.reasons[0]
