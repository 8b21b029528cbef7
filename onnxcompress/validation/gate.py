"""Gate policy: thresholds a candidate must meet. A failed gate is a result (GateResult), not an exception.

Every criterion that is set is checked; one that cannot be measured (no labels, latency not profiled, no
quantization coverage) fails with a reason, so a CI job never passes on a criterion it did not check.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from onnxcompress.config import config_from_dict
from onnxcompress.errors import RecipeError
from onnxcompress.validation.compare import Comparison
from onnxcompress.validation.config import TASK_METRICS, Tolerance
from onnxcompress.validation.evaluate import ValidationResult
from onnxcompress.validation.profile import ProfileResult
from onnxcompress.validation.text import LOWER_IS_BETTER


def _check_fraction(name: str, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
        raise RecipeError(f"{name} must be a fraction in [0, 1], got {v!r}", hint=f"e.g. {name} = 0.01 (1 percent)")


def _check_positive(name: str, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
        raise RecipeError(f"{name} must be a number > 0, got {v!r}", hint=f"e.g. {name} = 1.5")


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds; None = not checked. Accuracy values are fractions (0.01 = one percentage point).

    ``max_accuracy_drop``: reference minus candidate ``accuracy_metric`` (absolute); ``max_relative_accuracy_drop``:
    that drop divided by the reference value. ``tolerances``: per-output atol/rtol that the output comparison
    must pass (``""`` = default for every output). ``fidelity_floors``: every output keeps its kind's fidelity
    floor ([validate.floors]; the kind decides the metric, see validation.outputs). ``min_speedup``: the speed-up
    over the reference at the first profiled batch size, judged on the lower bound of its confidence interval
    (validation.speed). ``not_slower``: fails when the speed-up's upper bound is below 1 (the candidate is slower
    beyond the measurement's noise). ``max_p99_ms``: the candidate's p99 at every profiled batch size.
    """

    accuracy_metric: str = "top1"
    max_accuracy_drop: float | None = None
    max_relative_accuracy_drop: float | None = None
    min_top1_agreement: float | None = None
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    tolerances: dict[str, Tolerance] | None = None
    fidelity_floors: bool | None = None
    min_speedup: float | None = None
    not_slower: bool | None = None
    max_p99_ms: float | None = None
    max_size_mb: float | None = None
    min_int8_kernel_coverage: float | None = None

    def __post_init__(self):
        for name in ("max_accuracy_drop", "max_relative_accuracy_drop", "min_top1_agreement",
                     "min_int8_kernel_coverage"):
            _check_fraction(name, getattr(self, name))
        if self.min_cosine is not None and (isinstance(self.min_cosine, bool) or
                                            not isinstance(self.min_cosine, (int, float)) or
                                            not -1 <= self.min_cosine <= 1):
            raise RecipeError(f"min_cosine must be in [-1, 1], got {self.min_cosine!r}", hint="e.g. min_cosine = 0.99")
        for name in ("min_speedup", "max_p99_ms", "max_size_mb"):
            _check_positive(name, getattr(self, name))
        if self.min_sqnr_db is not None and (isinstance(self.min_sqnr_db, bool) or
                                             not isinstance(self.min_sqnr_db, (int, float)) or
                                             math.isnan(self.min_sqnr_db)):
            raise RecipeError(f"min_sqnr_db must be a number, got {self.min_sqnr_db!r}", hint="e.g. min_sqnr_db = 20")
        for name in ("fidelity_floors", "not_slower"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise RecipeError(f"{name} must be true or false, got {getattr(self, name)!r}", hint=f"{name} = true")
        if not isinstance(self.accuracy_metric, str) or not self.accuracy_metric:
            raise RecipeError("accuracy_metric must be a metric name", hint=f"one of {', '.join(TASK_METRICS)} or a "
                              "user metric's name")
        if self.tolerances is not None and (not isinstance(self.tolerances, dict) or
                                            not all(isinstance(t, Tolerance) for t in self.tolerances.values())):
            raise RecipeError("tolerances must map output names to {atol, rtol} tables",
                              hint='e.g. [gate.tolerances.""] atol = 1e-3')
        if self.is_empty():
            raise RecipeError("the gate policy checks nothing: every criterion is unset",
                              hint="set at least one criterion, e.g. min_cosine = 0.99 or max_accuracy_drop = 0.01 "
                                   f"(criteria: {', '.join(CRITERIA)})")

    def check_metric(self, user_metrics: Iterable[str] = ()) -> None:
        """``accuracy_metric`` must name a metric the run can compute: a task metric or one of ``user_metrics``."""
        known = (*TASK_METRICS, *user_metrics)
        if self.accuracy_metric not in known:
            raise RecipeError(f"unknown accuracy_metric '{self.accuracy_metric}'",
                              hint=f"use one of {', '.join(known)}" + ("" if user_metrics else
                                                                       " (or the name of a user metric in the API)"))

    @property
    def needs_latency(self) -> bool:
        return self.min_speedup is not None or self.max_p99_ms is not None or bool(self.not_slower)

    def is_empty(self) -> bool:
        """No criterion set (``False`` switches a yes/no criterion off; a threshold of 0 is a criterion)."""
        return all(getattr(self, f) is None or getattr(self, f) is False
                   for f in self.__dataclass_fields__ if f != "accuracy_metric")


#: every criterion key of a policy (all but accuracy_metric)
CRITERIA = tuple(f.name for f in fields(GatePolicy) if f.name != "accuracy_metric")


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "value": self.value, "threshold": self.threshold,
                "message": self.message}


@dataclass(frozen=True)
class GateResult:
    passed: bool
    criteria: tuple[Criterion, ...] = field(default_factory=tuple)

    @property
    def reasons(self) -> list[str]:
        return [c.message for c in self.criteria if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "criteria": [c.to_dict() for c in self.criteria], "failed": self.reasons}


def load_policy(path: str | Path) -> GatePolicy:
    """A TOML file with a [gate] table (a recipe file works too: only its [gate] table is read)."""

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"gate policy file not found: {path}", hint="give a TOML file with a [gate] table")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path} is not valid TOML: {e}", hint="fix the syntax of the policy file") from e
    except OSError as e:
        raise RecipeError(f"cannot read policy {path}: {e.strerror or e}", hint="check the file's permissions") from e
    if "gate" not in data:
        raise RecipeError(f"{path} has no [gate] table", hint="put the criteria under a [gate] header")
    return config_from_dict(GatePolicy, data["gate"], "gate")


# --- evaluation -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """Everything a gate can judge: validation, latency, size and int8 kernel coverage (None = not measured)."""

    validation: ValidationResult | None = None
    profile: ProfileResult | None = None
    candidate_size_mb: float | None = None
    int8_kernel_coverage: float | None = None


def _shown(value: float, threshold: float) -> str:
    """``value`` with 4 significant digits, more when it would otherwise read as equal to a different threshold."""
    for digits in range(4, 10):
        text = f"{value:.{digits}g}"
        if value == threshold or text != f"{threshold:g}":
            return text
    return repr(value)


def _at_least(name: str, value: float | None, threshold: float, unit: str = "", missing: str = "") -> Criterion:
    if value is None:
        return Criterion(name, False, None, threshold, f"{name}: not measured ({missing})")
    ok = value >= threshold
    word = ">=" if ok else "<"
    return Criterion(name, ok, value, threshold, f"{name}: {_shown(value, threshold)}{unit} {word} {threshold:g}{unit}")


def _at_most(name: str, value: float | None, threshold: float, unit: str = "", missing: str = "") -> Criterion:
    if value is None:
        return Criterion(name, False, None, threshold, f"{name}: not measured ({missing})")
    ok = value <= threshold
    word = "<=" if ok else ">"
    return Criterion(name, ok, value, threshold, f"{name}: {_shown(value, threshold)}{unit} {word} {threshold:g}{unit}")


def evaluate_gate(policy: GatePolicy, measured: Measured) -> GateResult:
    """Check ``measured`` against ``policy``; every criterion that is set is checked."""
    crits: list[Criterion] = []
    crits += _accuracy_criteria(policy, measured.validation)
    crits += _fidelity_criteria(policy, measured.validation)
    crits += _latency_criteria(policy, measured.profile)
    if policy.max_size_mb is not None:
        crits.append(_at_most("max_size_mb", measured.candidate_size_mb, policy.max_size_mb, " MB",
                              "candidate size unknown"))
    if policy.min_int8_kernel_coverage is not None:
        crits.append(_at_least("min_int8_kernel_coverage", measured.int8_kernel_coverage,
                               policy.min_int8_kernel_coverage, "", "no quantization coverage was measured"))
    return GateResult(all(c.passed for c in crits), tuple(crits))


def with_criteria(result: GateResult, extra: list[Criterion]) -> GateResult:
    """``result`` with stage checks added (e.g. the precision floor): the gate passes only if they pass too."""
    if not extra:
        return result
    criteria = tuple(result.criteria) + tuple(extra)
    return GateResult(all(c.passed for c in criteria), criteria)


def _accuracy_criteria(policy: GatePolicy, validation: ValidationResult | None) -> list[Criterion]:
    if policy.max_accuracy_drop is None and policy.max_relative_accuracy_drop is None:
        return []
    task = validation.task if validation is not None else None
    ref = task.reference.get(policy.accuracy_metric) if task is not None else None
    cand = task.candidate.get(policy.accuracy_metric) if task is not None else None
    why = f"no '{policy.accuracy_metric}' metric: the evaluation data needs labels"
    lower_better = policy.accuracy_metric in LOWER_IS_BETTER  # e.g. cer: the drop is the increase
    drop = None if ref is None or cand is None else (cand - ref if lower_better else ref - cand)
    out = []
    if policy.max_accuracy_drop is not None:
        out.append(_at_most("max_accuracy_drop", drop, policy.max_accuracy_drop, "", why))
    if policy.max_relative_accuracy_drop is not None:
        rel = None if drop is None or ref is None else (drop / ref if ref else 0.0)
        out.append(_at_most("max_relative_accuracy_drop", rel, policy.max_relative_accuracy_drop, "", why))
    return out


def _fidelity_criteria(policy: GatePolicy, validation: ValidationResult | None) -> list[Criterion]:
    fid = validation.fidelity if validation is not None else {}
    primary = validation.primary_output if validation is not None else None
    main = fid.get(primary) if primary else None
    out = []
    if policy.min_top1_agreement is not None:
        out.append(_at_least("min_top1_agreement", main.top1_agreement if main else None, policy.min_top1_agreement,
                             "", f"output '{primary}' has no class axis"))
    if policy.min_cosine is not None:
        out.append(_at_least("min_cosine", min((f.cosine for f in fid.values()), default=None),
                             policy.min_cosine, "", "no outputs compared"))
    if policy.min_sqnr_db is not None:
        out.append(_at_least("min_sqnr_db", min((f.sqnr_db for f in fid.values()), default=None),
                             policy.min_sqnr_db, " dB", "no outputs compared"))
    if policy.tolerances is not None:
        out += _tolerance_criteria(validation.comparison if validation is not None else None)
    if policy.fidelity_floors:
        out += _floor_criteria(validation)
    return out


def _floor_criteria(validation: ValidationResult | None) -> list[Criterion]:
    if validation is None or not validation.kinds:
        return [Criterion("fidelity_floors", False, None, None, "fidelity_floors: not measured (no outputs compared)")]
    out = []
    for name, k in validation.kinds.items():
        f = k.floor
        why = f"; kind: {k.decision.reason}" if k.decision.source == "inferred" else "; kind set by the user"
        out.append(Criterion(f"floor[{name}]", f.passed, f.value, f.floor, f"floor: {f.message}{why}"))
    return out


def _tolerance_criteria(comparison: dict[str, Comparison] | None) -> list[Criterion]:
    if not comparison:
        return [Criterion("tolerances", False, None, None, "tolerances: not measured (no outputs compared)")]
    out = []
    for name, c in comparison.items():
        msg = (f"output '{name}' within atol={c.atol:g}, rtol={c.rtol:g} ({c.check_stat})" if c.passed
               else f"output '{name}' exceeds atol={c.atol:g} and rtol={c.rtol:g} ({c.check_stat}; "
                    f"max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}; would pass with atol={c.would_pass_atol:.3g} "
                    f"or rtol={c.would_pass_rtol:.3g})")
        out.append(Criterion(f"tolerance[{name}]", c.passed, c.max_abs, c.atol, msg))
    return out


def _latency_criteria(policy: GatePolicy, profile: ProfileResult | None) -> list[Criterion]:
    out = []
    batches = profile.batches if profile is not None else ()
    estimate = batches[0].speedup if batches else None
    missing = "latency was not profiled" if not batches else "no reference was timed"
    if policy.min_speedup is not None:
        if estimate is None:
            out.append(_at_least("min_speedup", None, policy.min_speedup, "x", missing))
        else:
            ok = estimate.lower >= policy.min_speedup
            out.append(Criterion("min_speedup", ok, estimate.lower, policy.min_speedup,
                                 f"min_speedup: lower bound {estimate.lower:.3f}x {'>=' if ok else '<'} "
                                 f"{policy.min_speedup:g}x ({estimate.describe()})"))
    if policy.not_slower:
        if estimate is None:
            out.append(_at_least("not_slower", None, 1.0, "x", missing))
        else:
            ok = estimate.upper >= 1.0
            verdict = "not slower than the reference" if ok else "SLOWER than the reference"
            out.append(Criterion("not_slower", ok, estimate.upper, 1.0,
                                 f"not_slower: {verdict}: upper bound {estimate.upper:.3f}x {'>=' if ok else '<'} 1x "
                                 f"({estimate.describe()})"))
    if policy.max_p99_ms is not None:
        if not batches:
            out.append(_at_most("max_p99_ms", None, policy.max_p99_ms, " ms", "latency was not profiled"))
        for b in batches:
            p99 = b.models.get("candidate", b.models.get("model", {})).get("p99_ms")
            out.append(_at_most(f"max_p99_ms[batch={b.batch_size}]", p99, policy.max_p99_ms, " ms",
                                "latency was not profiled"))
    return out


def default_policy(validation: ValidationResult, *, profiled: bool = False) -> GatePolicy:
    """Used when the recipe has no [gate]: the accuracy drop <= 1 point when labels score a class output; every
    output keeps its kind's fidelity floor ([validate.floors]); with latency profiled, the candidate is not
    slower than the reference (beyond the noise of the measurement)."""
    task = validation.task.reference if validation.task is not None else {}
    if "top1" not in task and "exact_match" in task:  # string labels scored through a decoder
        return GatePolicy(accuracy_metric="exact_match", max_accuracy_drop=0.01, fidelity_floors=True,
                          not_slower=True if profiled else None)
    return GatePolicy(max_accuracy_drop=0.01 if "top1" in task else None, fidelity_floors=True,
                      not_slower=True if profiled else None)
