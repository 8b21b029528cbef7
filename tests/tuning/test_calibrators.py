"""The search tries the other calibrators on the whole model before moving nodes to higher precision: one spike
in the calibration data ruins minmax ranges, percentile ranges clip it, and the result says which calibrator
won, in a config that rebuilds the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

import onnxcompress as oc
from onnxcompress.errors import RecipeError
from support import graphs


def spiky():
    """|x| into a small MLP (Abs stays float, so the MatMul's input is a calibrated activation, not the graph
    input, whose range is always minmax)."""
    model = graphs.make("""
    g (float[N,64] x, float[64,64] w1, float[64] b1, float[64,10] w2) => (float[N,10] y) {
      a = Abs (x)
      h = MatMul (a, w1)
      hb = Add (h, b1)
      r = Relu (hb)
      y = MatMul (r, w2)
    }""", ["w1", "b1", "w2"])
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((256, 64)).astype(np.float32)
    calib[0, 0] = 300.0  # one value in 16384: minmax stretches Abs(x)'s grid (the MatMul's input) to 0..300
    evals = rng.standard_normal((128, 64)).astype(np.float32)
    return model, {"x": calib}, {"x": evals}


def _tune(calibrators):
    model, calib, evals = spiky()
    tune = oc.TuneConfig(metric="cosine", max_drop=0.01, measure_latency=False, calibrators=calibrators)
    return oc.quantize(model, calib, oc.QuantizeConfig(placement="fixed"), tune=tune, eval=evals)


def test_search_switches_to_the_calibrator_that_meets_the_goal():
    q, result = _tune(("percentile", "mse", "entropy"))
    s = result.search
    phases = [t["phase"] for t in s.trials]
    assert phases == ["baseline", "calibrator:percentile", "calibrator:mse", "calibrator:entropy"]
    assert not any(t["goal_met"] for t in s.trials[:3])  # the spike (0.006%) is inside 99.999% and MSE keeps it
    assert s.goal_met and s.best["calibrator"] == "entropy" and s.higher_precision == {}
    assert s.stopped == "calibrator 'entropy' meets the goal"
    assert result.config.calibrator == "entropy"
    model, calib, _ = spiky()
    plain, _ = oc.quantize(model, calib, oc.QuantizeConfig(placement="fixed", calibrator="entropy"),
                           self_check=oc.SelfCheckConfig(enabled=False))
    assert plain.SerializeToString() == q.SerializeToString()  # the reported calibrator rebuilds the same model


def test_without_calibrators_the_search_moves_nodes_instead():
    _, result = _tune(())
    assert all(not t["phase"].startswith("calibrator") for t in result.search.trials)
    assert all(t["calibrator"] == "minmax" for t in result.search.trials)
    assert result.search.higher_precision  # minmax ranges: only higher-precision nodes can help


def test_unknown_calibrator_is_a_recipe_error():
    with pytest.raises(RecipeError, match="unknown calibrator"):
        oc.TuneConfig(calibrators=("kl",))


def test_self_check_search_takes_its_calibrators_from_the_recipe(tmp_path):
    from onnxcompress.recipe import Recipe
    from onnxcompress.tuning.selfcheck import SelfCheckQuantizePass
    from onnxcompress.validation.config import ValidateConfig

    path = tmp_path / "r.toml"
    path.write_text("[self_check]\ncalibrators = []\n")
    check = Recipe.from_file(path).self_check
    assert check.calibrators == ()
    assert SelfCheckQuantizePass(oc.QuantizeConfig(), check, ValidateConfig())._tune().calibrators == ()
    assert oc.SelfCheckConfig().calibrators == ("percentile", "mse", "entropy")
    with pytest.raises(RecipeError, match="unknown calibrator"):
        oc.SelfCheckConfig(calibrators=["kl"])
