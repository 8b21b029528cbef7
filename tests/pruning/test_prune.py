"""The pass: allocation, targets, criteria, exclusions, determinism, errors, CLI and inspect."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxcompress.data.inputs import from_arrays
from onnxcompress.errors import RecipeError, UnsupportedModelError
from onnxcompress.passes.base import PassContext, apply_to_model
from onnxcompress.pruning import PruneConfig
from onnxcompress.pruning.prune_channels import PruneChannelsPass
from support import graphs
from support.prune_helpers import prune_and_check, random_feeds, shapes
from support.stages import prune_model

WIDE = """
g (float[N,3,6,6] x, float[16,3,3,3] w1, float[16] s, float[16] o, float[16] m, float[16] vvar, float[8,16,3,3] w2,
   float[8] b2, float[4,8] wf) => (float[N,4] y) {
    c1 = Conv <pads = [1,1,1,1]> (x, w1)
    n1 = BatchNormalization (c1, s, o, m, vvar)
    r1 = Relu (n1)
    c2 = Conv <pads = [1,1,1,1]> (r1, w2, b2)
    r2 = Relu (c2)
    p = GlobalAveragePool (r2)
    f = Flatten (p)
    y = Gemm <transB = 1> (f, wf)
}
"""


def wide() -> onnx.ModelProto:
    model = graphs.make(WIDE, ["w1", "s", "o", "m", "vvar", "w2", "b2", "wf"])
    for i, n in enumerate(model.graph.node):
        n.name = f"{n.op_type.lower()}{i}"
    return model


def calib(model, n=16):
    return from_arrays(random_feeds(model, batch=n, seed=1))


@pytest.mark.parametrize("bad", [dict(ratio=1.0), dict(ratio=-0.1), dict(ratio=float("nan")), dict(criterion="l3"),
                                 dict(allocation="x"), dict(min_channels=0), dict(round_to=0),
                                 dict(target_macs=0.5, target_params=0.5), dict(target_macs=1.5),
                                 dict(overrides={"a": 2.0}), dict(exclude="conv0")])
def test_bad_config_is_a_recipe_error(bad):
    with pytest.raises(RecipeError) as e:
        PruneConfig(**bad)
    assert e.value.hint


def test_round_to_min_channels_and_local_ratio():
    s = shapes(prune_and_check(wide(), PruneConfig(ratio=0.5))[0])
    assert s["w1"] == (8, 3, 3, 3) and s["w2"] == (4, 8, 3, 3)
    s = shapes(prune_and_check(wide(), PruneConfig(ratio=0.7, round_to=8))[0])
    assert s["w1"][0] == 8 and s["w2"][0] == 8  # never below one multiple, and a group of 8 stays 8
    s = shapes(prune_and_check(wide(), PruneConfig(ratio=0.9, min_channels=6, round_to=1))[0])
    assert s["w1"][0] == 6 and s["w2"][0] == 6


def test_auto_round_to_keeps_wide_groups_on_multiples_of_8():
    """The default rounds groups of >= 16 channels to the nearest multiple of 8 (CPU kernels block channels by
    8/16); narrower groups keep the exact ratio. The resolved multiple is recorded per group."""
    for ratio, wide_kept in ((0.3, 16), (0.5, 8), (0.7, 8)):  # keeps 12 (a tie: up) -> 16, 8 -> 8, 5 -> 8
        pruned, result = prune_and_check(wide(), PruneConfig(ratio=ratio))
        s = shapes(pruned)
        assert s["w1"][0] == wide_kept
        assert s["w2"][0] == 8 - int(ratio * 8 + 1e-9)
        by_size = {g["channels_before"]: g["round_to"] for g in result["groups"]}
        assert by_size == {16: 8, 8: 1}
    with pytest.raises(RecipeError, match="round_to"):
        PruneConfig(round_to="nearest")


def test_exclusion_and_override():
    pruned, report = prune_and_check(wide(), PruneConfig(ratio=0.5, exclude=("conv3",)))
    assert shapes(pruned)["w2"][0] == 8 and shapes(pruned)["w1"][0] == 8
    assert any("excluded" in r for b in report["blocked"] for r in b["reasons"])
    pruned, _ = prune_and_check(wide(), PruneConfig(ratio=0.5, overrides={"conv0": 0.25}, round_to=1))
    assert shapes(pruned)["w1"][0] == 12 and shapes(pruned)["w2"][0] == 4


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_scale", "activation", "reconstruction", "random"])
@pytest.mark.parametrize("allocation", ["local", "global"])
def test_every_criterion_and_allocation_gives_an_exact_cut(criterion, allocation):
    model = wide()
    pruned, report = prune_and_check(model, PruneConfig(ratio=0.4, criterion=criterion, allocation=allocation),
                                     calib=calib(model))
    assert report["after"]["macs"] < report["before"]["macs"]
    for g in report["groups"]:
        assert g["importance"]["min"] <= g["importance"]["max"]


def test_l1_removes_the_smallest_filters():
    model = wide()
    w1 = next(t for t in model.graph.initializer if t.name == "w1")
    values = onnx.numpy_helper.to_array(w1).copy()
    values[[3, 7, 11]] *= 1e-3
    w1.CopyFrom(onnx.numpy_helper.from_array(values, "w1"))
    _, report = prune_model(model, PruneConfig(ratio=3 / 16, criterion="l1", round_to=1))
    kept = next(r["kept"] for r in report["kept"] if r["tensor"] == "w1" and r["axis"] == 0)
    assert sorted(set(range(16)) - set(kept)) == [3, 7, 11]


@pytest.mark.parametrize("kind", ["target_macs", "target_params"])
def test_cost_target_is_reached(kind):
    pruned, report = prune_and_check(wide(), PruneConfig(**{kind: 0.5}))
    key = kind.split("_")[1]
    assert report["after"][key] <= 0.5 * report["before"][key]
    assert report["target"]["kind"] == key and report["target"]["achieved"] <= 0.5


def test_unreachable_target_and_nothing_prunable_are_clear_errors():
    with pytest.raises(RecipeError, match="cannot be met"):
        prune_model(wide(), PruneConfig(target_macs=0.001))
    text = """
    g (float[N,3,4,4] x, float[4,3,1,1] w) => (float[N,4,4,4] y) {
        y = Conv (x, w)
    }
    """
    with pytest.raises(UnsupportedModelError, match="nothing to prune") as e:
        prune_model(graphs.make(text, ["w"]), PruneConfig(ratio=0.5))
    assert "graph output" in str(e.value) and e.value.exit_code == 3


def test_ratio_zero_is_a_no_op_and_runs_are_deterministic():
    model = wide()
    graph_model, result = apply_to_model(model, PruneChannelsPass(PruneConfig(ratio=0.0)), PassContext())
    assert result.modified is False and shapes(graph_model) == shapes(model)
    a, _ = prune_model(model, PruneConfig(ratio=0.5, criterion="random", seed=3))
    b, _ = prune_model(model, PruneConfig(ratio=0.5, criterion="random", seed=3))
    assert a.SerializeToString() == b.SerializeToString()


def test_data_criteria_need_data():
    with pytest.raises(RecipeError, match="calibration data"):
        prune_model(wide(), PruneConfig(criterion="activation"))


def test_report_records_kept_indices_for_every_cut_tensor():
    pruned, report = prune_model(wide(), PruneConfig(ratio=0.5))
    new = shapes(pruned)
    for rec in report["kept"]:
        if rec["tensor"] in new:
            assert new[rec["tensor"]][rec["axis"]] == len(rec["kept"]) == rec["size_after"]
    assert json.loads(json.dumps(report)) == report
    assert {g["units_before"] for g in report["groups"]} == {16, 8}


def test_cli_prune_and_inspect(tmp_path):
    from typer.testing import CliRunner

    from onnxcompress.cli import app

    src = tmp_path / "m.onnx"
    onnx.save(wide(), src)
    runner = CliRunner()
    res = runner.invoke(app, ["prune", str(src), "-o", str(tmp_path / "p.onnx"), "--ratio", "0.5", "--report",
                              str(tmp_path / "r.json"), "--override", "conv0=0.25", "--round-to", "1"])
    assert res.exit_code == 0, res.output
    assert "PRUNED" in res.output and (tmp_path / "p.onnx").exists()
    assert json.loads((tmp_path / "r.json").read_text())["groups"][0]["units_after"] == 12
    res = runner.invoke(app, ["prune", str(src), "-o", str(tmp_path / "bad.onnx"), "--ratio", "1"])
    assert res.exit_code == 3 and not (tmp_path / "bad.onnx").exists()
    res = runner.invoke(app, ["inspect", str(src), "--json"])
    info = json.loads(res.stdout)
    assert res.exit_code == 0 and len(info["prune_groups"]["groups"]) == 2
    assert "prunable groups" in runner.invoke(app, ["inspect", str(src)]).output


def test_bias_correction_reduces_the_output_error():
    from support.common import ort_outputs

    model = wide()
    data = calib(model, 32)
    feeds = random_feeds(model, batch=32, seed=1)
    want = ort_outputs(model, feeds)["y"]
    errors = []
    for correct in (False, True):
        pruned, report = prune_model(model, PruneConfig(ratio=0.5, bias_correction=correct), data)
        onnx.checker.check_model(pruned, full_check=True)
        errors.append(float(np.mean((ort_outputs(pruned, feeds)["y"] - want) ** 2)))
    assert errors[1] < errors[0]
    assert any("bias correction" in n for n in report["notes"])
