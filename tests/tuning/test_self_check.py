"""quantize checks its own result: held-out calibration samples, each output's kind floor, the search below it,
exit 1 with what it tried when no plan meets the floor."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import onnxcompress as oc
from onnxcompress.cli import app
from onnxcompress.data.inputs import load_input_data
from onnxcompress.errors import RecipeError
from onnxcompress.recipe import Recipe
from onnxcompress.tuning.config import SelfCheckConfig
from support import fragile, graphs
from support.common import ort_outputs

FRAGILE = "MatMul_3"
runner = CliRunner()
FIXED = oc.QuantizeConfig(placement="fixed")  # every quantizable node INT8: the self-check is what is tested here


@pytest.fixture(scope="module")
def fixture():
    model = fragile.fragile_mlp()
    return model, {"x": fragile.fragile_data(model)["x"]}  # calibration data: inputs only, no labels


def test_holdout_split_is_disjoint_spread_and_complete():
    x = np.arange(40, dtype=np.float32).reshape(40, 1)
    rest, held = load_input_data({"x": x}).batched(7).split_every(5)
    got_rest = np.concatenate([b["x"] for b in rest])[:, 0]
    got_held = np.concatenate([b["x"] for b in held])[:, 0]
    assert list(got_held) == [4, 9, 14, 19, 24, 29, 34, 39] and len(held) == 8 and len(rest) == 32
    assert sorted(np.concatenate([got_rest, got_held])) == list(range(40))
    check = SelfCheckConfig()
    assert check.holdout_every(256) == 5 and check.holdout_every(32) == 4 and check.holdout_every(15) is None
    assert 256 // check.holdout_every(5000) <= check.max_holdout * 2 and 5000 // check.holdout_every(5000) <= 256


def test_self_check_triggers_the_search_on_the_fragile_layer(fixture):
    model, calib = fixture
    q, result = oc.quantize(model, calib, FIXED)
    check = result.self_check
    assert check is not None and check.searched and check.passed and not check.in_sample
    assert check.baseline["y"]["value"] < 0.98 <= check.final["y"]["value"]  # full INT8 misses, the search fixes it
    assert check.kinds["y"]["kind"] == "class_logits" and "held out" in check.data and check.samples == 51
    assert result.search is not None and result.search.higher_precision == {FRAGILE: "float"}
    x = calib["x"][4::5]  # the held-out samples: the written model agrees with the float one there
    agree = (ort_outputs(q, {"x": x})["y"].argmax(1) == ort_outputs(model, {"x": x})["y"].argmax(1)).mean()
    assert agree == pytest.approx(check.final["y"]["value"])


def test_a_good_model_passes_without_a_search():
    model = graphs.make("g (float[N,8] x, float[8,4] w) => (float[N,4] y) { y = MatMul (x, w) }", ["w"])
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    _, result = oc.quantize(model, {"x": x}, FIXED)
    assert result.self_check.passed and not result.self_check.searched and result.search is None


def test_self_check_off_and_search_off(fixture):
    model, calib = fixture
    _, plain = oc.quantize(model, calib, FIXED, self_check=SelfCheckConfig(enabled=False))
    assert plain.self_check is None and plain.search is None
    _, unsearched = oc.quantize(model, calib, FIXED, self_check=SelfCheckConfig(search=False))
    assert not unsearched.self_check.passed and not unsearched.self_check.searched and unsearched.search is None
    assert "search is off" in unsearched.self_check.stopped
    assert any("misses the fidelity floor" in w for w in unsearched.warnings)


def test_cli_exits_1_when_no_plan_reaches_the_floor(fixture, tmp_path):
    """A budget too small for any mixed-precision trial: the best plan (full INT8) is written, exit 1, and the
    message says what was tried."""
    model, calib = fixture
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", **calib)
    out, report = tmp_path / "q.onnx", tmp_path / "q.json"
    args = ["quantize", str(tmp_path / "m.onnx"), "-o", str(out), "--calib", str(tmp_path / "calib.npz"),
            "--report", str(report), "--placement", "fixed", "--time-budget", "0.001"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "self-check FAILED" in result.output and "tried the full INT8 plan" in result.output
    assert "y (class_logits) top1_agreement" in result.output and out.exists()
    assert "hint: the portable target uses 7-bit weights" in result.output and "--target cpu-vnni" in result.output
    info = json.loads(report.read_text())
    assert info["self_check"]["passed"] is False and info["self_check"]["stopped"] == "time budget exhausted"
    ok = runner.invoke(app, args[:-2])
    assert ok.exit_code == 0 and "self-check PASSED" in ok.output and "ran: goal met" in ok.output
    off = runner.invoke(app, args[:-2] + ["--no-self-check"])
    assert off.exit_code == 0 and "self_check" not in json.loads(report.read_text())


def test_recipe_section_and_output_kind_flag(fixture, tmp_path):
    model, calib = fixture
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", **calib)
    (tmp_path / "r.toml").write_text("[self_check]\nholdout = 0.25\nsearch = false\n"
                                     "[validate.floors]\nclass_top1_agreement = 0.3\n")
    args = ["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"), "--calib",
            str(tmp_path / "calib.npz"), "--recipe", str(tmp_path / "r.toml"), "--report", str(tmp_path / "q.json"),
            "--dump-recipe", str(tmp_path / "eff.toml"), "--placement", "fixed"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output  # full INT8 meets the lowered floor
    check = json.loads((tmp_path / "q.json").read_text())["self_check"]
    assert check["final"]["y"]["floor"] == 0.3 and "every 4th" in check["data"]
    assert Recipe.from_file(tmp_path / "eff.toml").self_check == SelfCheckConfig(holdout=0.25, search=False)
    kinds = runner.invoke(app, args + ["--output-kind", "y=regression"])
    assert kinds.exit_code == 1  # full INT8 misses the 5% relative-error floor of a regression output
    check = json.loads((tmp_path / "q.json").read_text())["self_check"]
    assert check["kinds"]["y"] == {"kind": "regression", "metric": "relative_error", "reason": "set by the user",
                                   "source": "override", "threshold": None}
    bad = runner.invoke(app, args + ["--output-kind", "nope=embedding"])
    assert bad.exit_code == 3 and "does not have" in bad.output
    with pytest.raises(RecipeError, match="holdout"):
        Recipe.from_dict({"self_check": {"holdout": 1.5}})
    with pytest.raises(RecipeError, match="valid keys"):
        Recipe.from_dict({"self_check": {"hold_out": 0.2}})


def test_a_branch_the_data_never_takes_is_no_crash():
    """The self-check's trials of an If model whose else branch the calibration data never takes (no cached range
    there): the same model as a plain quantization, that branch float with its reason."""
    rng = np.random.default_rng(0)
    w0, w1 = (", ".join(f"{v:.4f}" for v in rng.standard_normal(108)) for _ in range(2))
    model = graphs.make("""
    g (float[N,3,8,8] x, bool c) => (float[N,4,8,8] y) {
      y = If (c) <
        then_branch = t () => (float[N,4,8,8] ty) {
          tw = Constant <value = float[4,3,3,3] {W0}> ()
          ty = Conv <pads = [1,1,1,1]> (x, tw)
        },
        else_branch = e () => (float[N,4,8,8] ey) {
          ew = Constant <value = float[4,3,3,3] {W1}> ()
          ey = Conv <pads = [1,1,1,1]> (x, ew)
        }>
    }""".replace("W0", w0).replace("W1", w1), [])
    data = {"x": rng.standard_normal((40, 3, 8, 8)).astype(np.float32), "c": np.array(True)}
    checked, result = oc.quantize(model, data, FIXED)
    assert result.self_check.passed and not result.self_check.searched
    assert any("never computed on the calibration data" in r for _, r in result.skipped)
    rest = load_input_data(data).split_every(SelfCheckConfig().holdout_every(40))[0]
    plain, _ = oc.quantize(model, rest, FIXED, self_check=SelfCheckConfig(enabled=False))
    assert [(p.key, p.value) for p in checked.metadata_props] == [(p.key, p.value) for p in plain.metadata_props]
    assert checked.graph.SerializeToString() == plain.graph.SerializeToString()  # calibrated on the same samples


def test_a_model_with_a_fixed_batch_is_checked_one_sample_at_a_time():
    """ddddocr-style exports fix the batch at 1: the held-out samples are fed at that batch (the check exited 3)."""
    model = graphs.make("""
        g (float[1,16] x, float[32,16] w1, float[32] b1, float[8,32] w2, float[8] b2) => (float[1,8] y) {
            h = Gemm <transB = 1> (x, w1, b1)
            r = Relu (h)
            y = Gemm <transB = 1> (r, w2, b2)
        }""", ["w1", "b1", "w2", "b2"])
    x = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    _, result = oc.quantize(model, {"x": x}, FIXED)
    assert result.self_check is not None and result.self_check.samples == 8  # every 5th of 40, one at a time
    assert result.quantized
    assert result.self_check.passed  # but 8 samples cannot resolve a 0.98 floor: said, not hidden
    assert any("passed on only 8 samples" in w for w in result.warnings)
