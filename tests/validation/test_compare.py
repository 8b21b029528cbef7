"""Polygraphy semantics: an output fails only where both atol and rtol are exceeded."""

import math

import numpy as np
import pytest

from onnxcompress.errors import RecipeError
from onnxcompress.validation.compare import OutputComparison
from onnxcompress.validation.config import Tolerance, parse_tolerance, tolerance_for

REF = np.array([1.0, 100.0, 0.0, -2.0])
CAND = np.array([1.25, 100.5, 0.0, -2.0])  # abs 0.25 / 0.5; rel 0.25 / 0.005 (exact in binary)


def compare(tol, stat="elemwise", ref=REF, cand=CAND, chunks=1):
    c = OutputComparison("y", tol, stat)
    for r, k in zip(np.array_split(ref, chunks), np.array_split(cand, chunks)):
        c.update(r, k)
    return c.result().to_dict()


def test_fails_only_when_both_tolerances_are_exceeded():
    assert compare(Tolerance(atol=0.1, rtol=0.0))["passed"] is False  # element 1: abs 0.5 > 0.1 and rel > 0
    assert compare(Tolerance(atol=0.6, rtol=0.0))["passed"] is True  # abs within atol everywhere
    assert compare(Tolerance(atol=0.0, rtol=0.25))["passed"] is True  # rel within rtol everywhere
    r = compare(Tolerance(atol=0.3, rtol=0.01))  # element 0: abs 0.25 ok; element 1: rel 0.005 ok
    assert r["passed"] is True and r["mismatches"] == 0


def test_reports_the_tolerance_that_would_have_passed():
    r = compare(Tolerance(atol=0.01, rtol=0.001), chunks=2)
    assert r["passed"] is False and r["mismatches"] == 2
    assert r["would_pass"]["atol"] == pytest.approx(0.5)  # at rtol 0.001 both elements need atol >= 0.5
    assert r["would_pass"]["rtol"] == pytest.approx(0.25)  # at atol 0.01 both need rtol >= 0.25
    assert compare(Tolerance(atol=0.5, rtol=0.001))["passed"] is True
    assert compare(Tolerance(atol=0.01, rtol=0.25))["passed"] is True
    assert compare(Tolerance(atol=0.49, rtol=0.001))["passed"] is False


def test_statistics():
    tol = Tolerance(atol=0.2, rtol=0.01)
    r = compare(tol, "max")
    assert r["stat_abs"] == pytest.approx(0.5) and r["stat_rel"] == pytest.approx(0.25) and not r["passed"]
    r = compare(tol, "mean")
    assert r["stat_abs"] == pytest.approx(0.75 / 4) and r["passed"]  # mean abs 0.1875 <= 0.2
    ref, cand = np.arange(1.0, 101.0), np.arange(1.0, 101.0) + 0.01 * np.arange(100)  # abs diffs 0 .. 0.99
    r = compare(Tolerance(atol=1e-3, rtol=1e-3), "median", ref=ref, cand=cand, chunks=3)
    assert 0.49 <= r["stat_abs"] <= 0.5 * 1.025 and r["passed"] is False  # histogram estimate, upper bin edge
    assert compare(Tolerance(atol=0.52, rtol=0.0), "median", ref=ref, cand=cand)["passed"] is True


def test_zero_reference_and_nonfinite():
    r = compare(Tolerance(atol=1e-3, rtol=10.0), ref=np.array([0.0]), cand=np.array([1.0]))
    assert r["max_rel"] == math.inf and r["passed"] is False
    r = compare(Tolerance(atol=1e9, rtol=1e9), ref=np.array([1.0]), cand=np.array([np.nan]))
    assert r["nonfinite"] == 1 and r["passed"] is False


def test_per_output_tolerances_with_default():
    tols = {"": Tolerance(atol=0.1), "logits": Tolerance(atol=1.0)}
    assert tolerance_for(tols, "logits").atol == 1.0
    assert tolerance_for(tols, "other").atol == 0.1
    assert tolerance_for({}, "x") == Tolerance()


def test_parse_tolerance():
    assert parse_tolerance("atol=1e-3,rtol=0.01") == ("", Tolerance(1e-3, 0.01))
    assert parse_tolerance("logits:atol=0.5") == ("logits", Tolerance(atol=0.5))
    for bad in ("atol", "foo=1", "atol=x", ""):
        with pytest.raises(RecipeError):
            parse_tolerance(bad)
    with pytest.raises(RecipeError, match=">= 0"):
        Tolerance(atol=-1)
