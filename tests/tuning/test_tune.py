"""Sensitivity ranking and the mixed-precision search on a fixture with one deliberately fragile layer."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxcompress.data.inputs import load_input_data
from onnxcompress.errors import DataError, RecipeError
from onnxcompress.quantization import QuantizeConfig
from onnxcompress.tuning.config import TuneConfig
from onnxcompress.tuning.measure import Evaluator
from onnxcompress.tuning.sensitivity import analyze, proxy_sqnr
from onnxcompress.tuning.trials import TrialBuilder, exact
from support import fragile
from support.common import ort_outputs
from support.stages import quantize_model, tune_quantization

FRAGILE = "MatMul_3"  # the middle MatMul (nodes are named <op>_<index> by the quantizer)
FAST = dict(measure_latency=False, top_k=4)


@pytest.fixture(scope="module")
def fixture():
    model = fragile.fragile_mlp()
    return model, fragile.fragile_data(model)


def test_full_int8_breaks_the_fragile_layer(fixture):
    model, data = fixture
    q, _ = quantize_model(model, data, QuantizeConfig(placement="fixed", verify=False))
    pred = ort_outputs(q, {"x": data["x"]})["y"].argmax(1)
    assert (pred == data["labels"]).mean() < 0.8  # the fixture really is fragile


def test_proxy_and_ranking_put_the_fragile_layer_first(fixture):
    model, data = fixture
    calib = load_input_data(data)
    builder = TrialBuilder(model, calib, QuantizeConfig(placement="fixed"))
    units = builder.units()
    assert list(units) == ["MatMul_0", "MatMul_3", "MatMul_6", "MatMul_9"]
    sqnr, skipped = proxy_sqnr(builder, units, builder.build({})[0], calib)
    assert not skipped and set(sqnr) == set(units)
    assert min(sqnr, key=sqnr.get) == FRAGILE
    assert sqnr[FRAGILE] < 10 < min(v for n, v in sqnr.items() if n != FRAGILE)
    tune = TuneConfig(max_drop=0.01, **FAST)
    result = analyze(builder, Evaluator(model, calib, tune, "calib"), tune)
    assert result["ranking"][0] == FRAGILE
    first = result["nodes"][0]
    assert first["node"] == FRAGILE and first["rank"] == 1
    assert first["gain_if_float"] > 0.3 and first["drop_only_quantized"] > 0.3
    assert all(r["gain_if_float"] < 0.05 for r in result["nodes"][1:])


def test_proxy_matches_a_direct_computation(fixture):
    """The shadow node's output equals the node computed by hand from the QDQ model's parameters."""
    model, data = fixture
    calib = load_input_data(data)
    builder = TrialBuilder(model, calib, QuantizeConfig(placement="fixed"))
    sqnr, _ = proxy_sqnr(builder, {FRAGILE: "MatMul"}, builder.build({})[0], calib, samples=None)
    from onnxcompress.tuning.sensitivity import build_only

    single = build_only(builder, FRAGILE)  # the model with only this node quantized
    names = [n.output[0] for n in builder.model.graph.node if n.name == FRAGILE]
    from onnxcompress.ir.edit import expose_outputs

    a = ort_outputs(expose_outputs(builder.model, names), {"x": data["x"]})[names[0]].astype(np.float64)
    b = ort_outputs(expose_outputs(single, names), {"x": data["x"]})[names[0]].astype(np.float64)
    direct = 10 * np.log10((a ** 2).sum() / ((a - b) ** 2).sum())
    assert abs(direct - sqnr[FRAGILE]) < 0.05, (direct, sqnr[FRAGILE])


def test_max_drop_keeps_exactly_the_fragile_layer(fixture, tmp_path):
    model, data = fixture
    before = model.SerializeToString()
    out, trace = tmp_path / "mixed.onnx", tmp_path / "trace.json"
    q, report = tune_quantization(model, data, QuantizeConfig(placement="fixed"), TuneConfig(max_drop=0.01, **FAST),
                                  output=out, trace=trace)
    tune = report["tune"]
    assert tune["goal_met"] is True
    assert tune["higher_precision"] == {FRAGILE: "float"}
    assert model.SerializeToString() == before  # the input model is never modified
    saved = onnx.load(str(out))
    assert saved.SerializeToString() == q.SerializeToString()
    inits = {t.name for t in saved.graph.initializer}
    float_weight = [n.name for n in saved.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert float_weight == [FRAGILE]  # every other MatMul takes a DequantizeLinear'd int8 weight
    pred = ort_outputs(saved, {"x": data["x"]})["y"].argmax(1)
    assert 1.0 - (pred == data["labels"]).mean() <= 0.01  # goal re-checked independently with ORT
    written = json.loads(trace.read_text())
    assert written["goal_met"] and len(written["trials"]) == len(tune["trials"]) >= 2
    assert written["trials"][0]["higher_precision"] == {} and not written["trials"][0]["goal_met"]
    skipped = {s["node"]: s["reason"] for s in report["skipped"]}
    assert FRAGILE in skipped and "excluded" in skipped[FRAGILE]


def test_deterministic_without_latency(fixture, tmp_path):
    model, data = fixture
    cfg = TuneConfig(max_drop=0.01, **FAST)
    a, _ = tune_quantization(model, data, QuantizeConfig(placement="fixed"), cfg)
    b, _ = tune_quantization(model, data, QuantizeConfig(placement="fixed"), cfg)
    assert a.SerializeToString() == b.SerializeToString()


def test_trial_builder_matches_plain_quantization(fixture):
    """Cached ranges: a trial is byte-identical to quantize_model with the same exclusion (the builder gets the
    pre-processed model, as in the pipeline)."""
    from onnxcompress import pipeline
    from onnxcompress.passes import PassContext
    from onnxcompress.recipe import Recipe

    model, data = fixture
    prepared = pipeline.preprocessed(model, Recipe(), PassContext())
    builder = TrialBuilder(prepared, load_input_data(data), QuantizeConfig(placement="fixed"))
    trial, _ = builder.build({FRAGILE: "float"})
    plain, _ = quantize_model(builder.model, data, QuantizeConfig(placement="fixed", exclude=(exact(FRAGILE),), verify=False))
    assert oc_strip(trial) == oc_strip(plain)


def test_int16_choice_changes_activation_dtype(fixture):
    model, data = fixture
    builder = TrialBuilder(model, load_input_data(data), QuantizeConfig(placement="fixed"))
    q, result = builder.build({FRAGILE: "int16"})
    report = result.to_dict()
    dtypes = {name: t["dtype"] for name, t in report["tensors"].items()}
    assert "int16" in dtypes.values() and "uint8" in dtypes.values()
    x = data["x"][:8]
    assert np.isfinite(ort_outputs(q, {"x": x})["y"]).all()


def test_goal_not_met_still_saves_best_and_trace(fixture, tmp_path):
    """An impossible goal (cosine 1 - 1e-9) or a tiny budget: the best model and the trace are still written."""
    model, data = fixture
    out, trace = tmp_path / "best.onnx", tmp_path / "trace.json"
    cfg = TuneConfig(metric="cosine", max_drop=1e-9, max_candidates=2, **FAST)
    q, report = tune_quantization(model, data, QuantizeConfig(placement="fixed"), cfg, output=out, trace=trace)
    tune = report["tune"]
    assert tune["goal_met"] is False and "no candidates left" in tune["stopped"]
    assert out.is_file() and onnx.load(str(out)).SerializeToString() == q.SerializeToString()
    best_drop = tune["best"]["drop"]
    assert best_drop == min(t["drop"] for t in tune["trials"])
    assert json.loads(trace.read_text())["goal_met"] is False

    out2 = tmp_path / "budget.onnx"
    q2, report2 = tune_quantization(model, data, QuantizeConfig(placement="fixed"),
                                    TuneConfig(max_drop=0.0, time_budget=1e-6, **FAST), output=out2)
    assert report2["tune"]["stopped"] == "time budget exhausted"
    assert len(report2["tune"]["trials"]) == 1 and out2.is_file()


def test_search_with_latency_and_eval_data(fixture):
    model, data = fixture
    evald = fragile.fragile_data(model, n=128, seed=1)
    q, report = tune_quantization(model, data, QuantizeConfig(placement="fixed"),
                                  TuneConfig(metric="agreement", max_drop=0.02, latency_iterations=3, top_k=2),
                                  eval_data=evald)
    tune = report["tune"]
    assert tune["goal"]["data"] == "evaluation data" and tune["goal"]["samples"] == 128
    assert tune["goal_met"] and FRAGILE in tune["higher_precision"]
    assert tune["best"]["latency"]["speedup"] > 0


def test_typed_errors(fixture):
    model, data = fixture
    with pytest.raises(RecipeError):
        TuneConfig(metric="f1")
    with pytest.raises(RecipeError):
        TuneConfig(max_drop=1.5)
    with pytest.raises(RecipeError):
        TuneConfig(precisions=("int4",))
    with pytest.raises(DataError, match="labels"):
        tune_quantization(model, {"x": data["x"]}, QuantizeConfig(placement="fixed"), TuneConfig(metric="top1", **FAST))


def test_optimize_uses_the_search_when_the_gate_has_an_accuracy_criterion(fixture):
    from onnxcompress import api
    from onnxcompress.recipe import Recipe

    model, data = fixture
    recipe = Recipe.from_dict({"gate": {"max_accuracy_drop": 0.01}, "quantize": {"placement": "fixed"},
                               "validate": {"profile": {"enabled": False}}})
    _, report = api.optimize(model, recipe=recipe, calib=data, eval=data)
    tune = report.stages.quantize.search
    assert tune.goal_met and list(tune.higher_precision.values()) == ["float"]
    assert report.gate.passed is True
    assert any(d.pass_name == "TuneQuantizationPass" for d in report.decisions)
    assert report.recipe.tune is not None and report.recipe.tune.metric == "top1"  # the derived goal is recorded
    _, checked = api.optimize(model, recipe=Recipe.from_dict({"validate": {"profile": {"enabled": False}},
                                                              "quantize": {"placement": "fixed"}}),
                              calib=data, eval=data)
    check = checked.stages.quantize.self_check  # no gate: the self-check finds the fragile layer by itself
    assert check.searched and check.passed and checked.stages.quantize.search.higher_precision == {FRAGILE: "float"}
    assert [c.passed for c in checked.gate.criteria if c.name.startswith("floor[")] == [True]
    md = checked.to_markdown()
    assert "## Quantize self-check (passed" in md and "the accuracy-aware search ran: goal met" in md
    _, plain = api.optimize(model, recipe=Recipe.from_dict({"validate": {"profile": {"enabled": False}},
                                                            "quantize": {"placement": "fixed"},
                                                            "self_check": False}), calib=data, eval=data)
    assert plain.stages.quantize.search is None and plain.stages.quantize.self_check is None
    assert plain.gate.passed is False  # plain INT8 misses the class floor, and the default gate says so


def test_dynamic_mode_search_keeps_the_fragile_layer_float(fixture):
    model, data = fixture
    q, report = tune_quantization(model, data, QuantizeConfig(placement="fixed", mode="dynamic"),
                                  TuneConfig(max_drop=0.01, **FAST))
    assert report["tune"]["goal_met"] and report["tune"]["higher_precision"] == {FRAGILE: "float"}
    assert report["tune"]["sensitivity"]["ranking"][0] == FRAGILE  # emulated dynamic proxy
    assert sum(n.op_type == "MatMulInteger" for n in q.graph.node) == 3


def oc_strip(model):
    """The graph's bytes (the model-level fields differ only in the producer stamp of the API run)."""
    return model.graph.SerializeToString()


def test_proxy_groups_units_by_memory_and_gives_the_same_sqnr(fixture, monkeypatch):
    """Units whose outputs of one sample would pass calibration_memory_mb are shadowed in groups (one pass each);
    the SQNR of a node does not depend on the grouping."""
    from onnxcompress.tuning import sensitivity

    model, data = fixture
    calib = load_input_data(data)
    builder = TrialBuilder(model, calib, QuantizeConfig(placement="fixed"))
    units = builder.units()
    assert sensitivity.unit_groups(builder, units, 1 << 30) == [units]
    assert sensitivity.unit_groups(builder, units, 1) == [{n: op} for n, op in units.items()]
    qmodel = builder.build({})[0]
    whole, _ = proxy_sqnr(builder, units, qmodel, calib)
    monkeypatch.setattr(sensitivity, "unit_groups", lambda b, u, budget: [{n: op} for n, op in u.items()])
    split, _ = proxy_sqnr(builder, units, qmodel, calib)
    assert split == pytest.approx(whole, rel=1e-9)
