"""The accuracy-aware search in weight_only mode: layers that INT4 hurts most move to 8-bit weights (or float)
until the goal holds, each listed in the report; the trials reuse one set of calibration moments."""

from __future__ import annotations

import numpy as np
import pytest

import onnxcompress as oc
from support import wgraphs
from support.stages import tune_quantization

QUANT = oc.QuantizeConfig(mode="weight_only", weight_bits=4, block_size=16, method="gptq", min_weight_elements=0)


def test_int4_misses_the_goal_and_the_search_keeps_layers_int8():
    model = wgraphs.linear_stack()
    calib, held_out = wgraphs.correlated_inputs(256), wgraphs.correlated_inputs(128, seed=1)
    tune = oc.TuneConfig(metric="cosine", max_drop=0.0005, measure_latency=False)
    q, report = tune_quantization(model, calib, QUANT, tune, eval_data=held_out)
    t = report["tune"]
    assert t["trials"][0]["phase"] == "baseline" and not t["trials"][0]["goal_met"], "full INT4 misses the goal"
    assert t["goal_met"] and t["higher_precision"] and set(t["higher_precision"].values()) <= {"int8", "float"}
    assert "int8" in t["higher_precision"].values()
    greedy = [tr for tr in t["trials"] if tr["phase"] == "greedy"]
    assert list(greedy[0]["higher_precision"].values()) == ["int8"], "8-bit weights are tried before float"
    bits = {w["node"]: w["bits"] for w in report["weights"]["layers"]}
    for node, precision in t["higher_precision"].items():
        assert bits.get(node) == 8 if precision == "int8" else node not in bits
    ranked = t["sensitivity"]["nodes"]
    assert all(r["proxy_sqnr_db"] is not None and "X^T X" in r["proxy"] for r in ranked)
    assert sum(n.op_type == "MatMulNBits" for n in q.graph.node) == len(bits)


def test_float_only_choice_and_a_met_goal_stop_early():
    model = wgraphs.linear_stack()
    calib = wgraphs.correlated_inputs(256)
    loose = oc.TuneConfig(metric="cosine", max_drop=0.05, measure_latency=False)
    _, report = tune_quantization(model, calib, QUANT, loose)
    assert report["tune"]["stopped"].startswith("full INT8 meets") or report["tune"]["goal_met"]
    assert len(report["tune"]["trials"]) == 1 and not report["tune"]["higher_precision"]
    floats = oc.TuneConfig(metric="cosine", max_drop=0.0005, measure_latency=False, precisions=("float",))
    assert floats.usable_precisions("weight_only") == ("float",)
    _, report = tune_quantization(model, calib, QUANT, floats)
    assert set(report["tune"]["higher_precision"].values()) <= {"float"}


def test_the_goal_can_be_measured_on_another_output():
    model = wgraphs.embedding_matmul()
    data = {"ids": np.random.default_rng(0).integers(0, 50, (32, 5)).astype(np.int64)}
    tune = oc.TuneConfig(metric="cosine", max_drop=0.5, measure_latency=False, output="y")
    _, report = tune_quantization(model, data, QUANT, tune)
    assert report["tune"]["goal_met"]
    with pytest.raises(oc.DataError, match="not an output"):
        tune_quantization(model, data, QUANT, oc.TuneConfig(metric="cosine", measure_latency=False, output="nope"))
