"""The sensitivity proxy and the search on the bundled real models (skipped when a model is not built)."""

from __future__ import annotations

import math

import pytest

from onnxcompress.data.inputs import load_input_data
from onnxcompress.ir.io import load_model
from onnxcompress.quantization import QuantizeConfig
from onnxcompress.tuning import TuneConfig
from onnxcompress.tuning.sensitivity import proxy_sqnr
from onnxcompress.tuning.trials import TrialBuilder
from support.common import bundled_data, bundled_model
from support.stages import tune_quantization


def _need(name):
    if not bundled_model(name).exists():
        pytest.skip(f"{name} is not built")
    return load_model(bundled_model(name))


@pytest.mark.parametrize("name", ["resnet_mnist", "vit_mnist"])
def test_proxy_traces_every_quantizable_node(name):
    model = _need(name)
    calib = load_input_data(bundled_data(name, "calib")).limited(64)
    builder = TrialBuilder(model, calib, QuantizeConfig(placement="fixed"))
    units = builder.units()
    sqnr, skipped = proxy_sqnr(builder, units, builder.build({})[0], calib, samples=64)
    assert not skipped and set(sqnr) == set(units) and len(units) >= 10
    assert all(math.isfinite(v) and v > 5 for v in sqnr.values()), sqnr


def test_search_on_resnet_meets_half_a_point():
    model = _need("resnet_mnist")
    evald = load_input_data(bundled_data("resnet_mnist", "eval")).limited(256)
    q, report = tune_quantization(model, bundled_data("resnet_mnist", "calib"), QuantizeConfig(placement="fixed", verify=False),
                                  TuneConfig(max_drop=0.005, measure_latency=False), eval_data=evald)
    tune = report["tune"]
    assert tune["goal_met"] and tune["best"]["drop"] <= 0.005 and tune["goal"]["samples"] == 256
