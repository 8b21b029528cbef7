"""Adversarial robustness: bad input fails cleanly, outputs are deterministic, inputs are never modified.

Every command that reads a model/data/recipe or writes output gets a corrupt/missing model, bad calibration data
and unwritable output paths. Expected: exit 3 with one message and a hint, no traceback (usage errors exit 2),
the output folder exactly as it was (no temp file, no half-written or stray output) and the input model
byte-identical afterwards.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import onnxcompress as oc
from onnxcompress.cli import app
from onnxcompress.errors import OutputPathError
from onnxcompress.recipe import Recipe
from support import graphs
from support.clean import listing, run_clean_failure, sha
from support.common import bundled_data, bundled_model, ort_outputs

runner = CliRunner()


# --- workspace --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Inputs shared by the tests: a fixture CNN, good and bad data, bad models, recipes, a gate policy."""
    d = tmp_path_factory.mktemp("robust")
    model = graphs.conv_bn_head()
    onnx.save(model, d / "m.onnx")
    x = np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)
    labels = ort_outputs(model, {"x": x})["y"].argmax(1).astype(np.int64)
    np.savez(d / "good.npz", x=x, labels=labels)
    bad_data = {
        "wrong_key": {"z": x}, "wrong_dtype": {"x": x.astype(np.float64)}, "int_dtype": {"x": x.astype(np.int32)},
        "wrong_shape": {"x": x[:, :, :4, :4]}, "wrong_rank": {"x": x[:, 0]}, "empty": {}, "no_samples": {"x": x[:0]},
    }
    for name, arrays in bad_data.items():
        np.savez(d / f"{name}.npz", **arrays)
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        bad = x.copy()
        bad[0, 0, 0, 0] = value  # the first sample: even `profile`, which times only the first batch, reads it
        np.savez(d / f"{name}.npz", x=bad)
    late = x.copy()
    late[-1, 1, 2, 3] = np.nan
    np.savez(d / "nan_late.npz", x=late, labels=labels)
    (d / "corrupt.npz").write_bytes(b"this is not a zip archive")
    blob = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(blob[: len(blob) // 2])
    (d / "corrupt.onnx").write_bytes(b"this is not onnx")
    blob = model.SerializeToString()
    (d / "truncated.onnx").write_bytes(blob[: len(blob) // 2])
    (d / "empty.onnx").write_bytes(b"")
    old = onnx.ModelProto()
    old.CopyFrom(model)
    old.opset_import[0].version = 12
    onnx.save(old, d / "old.onnx")
    custom = onnx.ModelProto()
    custom.CopyFrom(model)
    relu = next(n for n in custom.graph.node if n.op_type == "Relu")
    relu.op_type, relu.domain = "MyRelu", "com.example"
    custom.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(custom, d / "custom.onnx")
    (d / "gate.toml").write_text("[gate]\nmin_cosine = 0.9\n")
    recipes = {
        "unknown_key.toml": "seed = 0\nbogus = 1\n", "unknown_nested.toml": "[prune]\nratioo = 0.5\n",
        "bad_ratio.toml": "[prune]\nratio = 1.5\n", "syntax.toml": "[prune\nratio =\n",
        "bad_gate_key.toml": "[gate]\nmin_cosin = 0.9\n", "bad_validate.toml": "[validate]\nbatch_size = 0\n",
    }
    for name, text in recipes.items():
        (d / name).write_text(text)
    return d


_sha, _listing = sha, listing


# --- what each command is called with --------------------------------------------------------------------------
def _cmd(name: str, ws: Path, model: Path, data: Path, out: Path) -> list:
    m, g = ws / "m.onnx", ws / "gate.toml"
    return {
        "inspect": ["inspect", model],
        "convert": ["convert", model, "-o", out],
        "prune": ["prune", model, "-o", out, "--calib", data, "--criterion", "activation"],
        "distill": ["distill", m, model, "-o", out, "--calib", data, "--samples", "16"],
        "export-weights": ["distill", "export-weights", model, "-o", out.with_suffix(".npz")],
        "attach": ["distill", "attach", model, m, "-o", out, "--data", data],
        "quantize": ["quantize", model, "-o", out, "--calib", data, "--placement", "fixed"],  # tiny: INT8 would not pay
        "sensitivity": ["sensitivity", model, "--calib", data, "--top-k", "1", "--report", out.with_suffix(".json")],
        "validate": ["validate", m, model, "--data", data, "--report-dir", out.parent / "rep"],
        "profile": ["profile", model, "--data", data, "--iterations", "2", "--warmup", "1", "--no-op-profile",
                    "--report-dir", out.parent / "rep"],
        "gate": ["gate", m, model, "--policy", g, "--data", data, "--report-dir", out.parent / "rep"],
        "optimize": ["optimize", model, "-o", out, "--calib", data, "--no-profile"],
    }[name]


ALL = ["inspect", "convert", "prune", "distill", "export-weights", "attach", "quantize", "sensitivity", "validate",
       "profile", "gate", "optimize"]
WITH_DATA = ["prune", "distill", "attach", "quantize", "sensitivity", "validate", "profile", "gate", "optimize"]
WITH_MODEL_OUTPUT = ["convert", "prune", "distill", "export-weights", "attach", "quantize", "optimize"]


@pytest.mark.parametrize("cmd", ALL)
def test_every_command_succeeds_on_good_input(cmd, ws, tmp_path):
    result = runner.invoke(app, [str(a) for a in _cmd(cmd, ws, ws / "m.onnx", ws / "good.npz", tmp_path / "o.onnx")])
    assert result.exit_code == 0, result.output
    assert not [p for p in _listing(tmp_path) if Path(p).name.startswith(".")], "temp file left behind"


@pytest.mark.parametrize("bad", ["missing.onnx", "corrupt.onnx", "truncated.onnx", "empty.onnx", "."])
@pytest.mark.parametrize("cmd", ALL)
def test_bad_model_file(cmd, bad, ws, tmp_path):
    model = ws / bad if bad != "." else ws
    out = run_clean_failure(_cmd(cmd, ws, model, ws / "good.npz", tmp_path / "o.onnx"), tmp_path, [ws / "m.onnx"])
    assert str(model) in out


BAD_DATA = {
    "missing": "not found", "corrupt": "not a valid .npz", "truncated": "not a valid .npz",
    "wrong_key": "no data for model input 'x'", "wrong_dtype": "expected dtype float32, found float64",
    "int_dtype": "found int32", "wrong_shape": "axis 2 must be 8", "wrong_rank": "rank 4 expected",
    "empty": "no samples", "no_samples": "no samples", "nan": "NaN/Inf", "inf": "NaN/Inf",
}


@pytest.mark.parametrize("bad", list(BAD_DATA))
@pytest.mark.parametrize("cmd", WITH_DATA)
def test_bad_calibration_or_evaluation_data(cmd, bad, ws, tmp_path):
    args = _cmd(cmd, ws, ws / "m.onnx", ws / f"{bad}.npz", tmp_path / "o.onnx")
    run_clean_failure(args, tmp_path, [ws / "m.onnx"], match=BAD_DATA[bad])


@pytest.mark.parametrize("cmd", WITH_MODEL_OUTPUT)
@pytest.mark.parametrize("where", ["no_folder", "is_directory", "is_input"])
def test_unwritable_output(cmd, where, ws, tmp_path):
    shutil.copy(ws / "m.onnx", tmp_path / "in.onnx")
    (tmp_path / "adir").mkdir()
    model, out = ws / "m.onnx", {"no_folder": tmp_path / "nope" / "o.onnx", "is_directory": tmp_path / "adir",
                                 "is_input": tmp_path / "in.onnx"}[where]
    if where == "is_input":
        model = out
    args = _cmd(cmd, ws, model, ws / "good.npz", out)
    if cmd == "export-weights":
        args[-1] = out
    expected = {"no_folder": "does not exist", "is_directory": "is a directory", "is_input": "is also an input"}
    run_clean_failure(args, tmp_path, [tmp_path / "in.onnx", ws / "m.onnx"], match=expected[where])


def _other_outputs(ws: Path, t: Path) -> list[tuple[list, str]]:
    """Cases that name an input as an output use copies in ``t`` (a regression must not spoil the shared inputs)."""
    m, g, o, mc, gc = ws / "m.onnx", ws / "good.npz", t / "o.onnx", t / "in.onnx", t / "in.npz"
    return [
        (["prune", m, "-o", o, "--report", t / "nope" / "r.json"], "does not exist"),
        (["prune", mc, "-o", o, "--report", mc], "is also an input"),
        (["quantize", m, "-o", o, "--calib", g, "--report", t / "nope" / "r.json"], "does not exist"),
        (["quantize", m, "-o", o, "--calib", gc, "--report", gc], "is also an input"),
        (["quantize", m, "-o", o, "--calib", g, "--max-drop", "0.01", "--trace", t / "nope" / "t.json"],
         "does not exist"),
        (["sensitivity", mc, "--calib", g, "--report", mc], "is also an input"),
        (["optimize", m, "-o", o, "--dump-recipe", t / "nope" / "r.toml", "--no-profile"], "does not exist"),
        (["optimize", m, "-o", o, "--dump-recipe", t / "r.yaml", "--no-profile"], "*.toml or *.json"),
        (["optimize", m, "-o", o, "--report-dir", m, "--no-profile"], "is an existing file"),
        (["validate", m, m, "--data", g, "--report-dir", m], "is an existing file"),
        (["profile", m, "--report-dir", m], "is an existing file"),
        (["gate", m, m, "--policy", ws / "gate.toml", "--data", g, "--report-dir", m], "is an existing file"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_unwritable_report_trace_and_recipe_paths_fail_before_any_output(case, ws, tmp_path):
    shutil.copy(ws / "m.onnx", tmp_path / "in.onnx")
    shutil.copy(ws / "good.npz", tmp_path / "in.npz")
    args, match = _other_outputs(ws, tmp_path)[case]
    inputs = [ws / "m.onnx", ws / "good.npz", tmp_path / "in.onnx", tmp_path / "in.npz"]
    run_clean_failure(args, tmp_path, inputs, match=match)


def _bad_options(ws: Path, t: Path) -> list[tuple[list, int, str]]:
    m, g, o = ws / "m.onnx", ws / "good.npz", t / "o.onnx"
    return [
        (["prune", m, "-o", o, "--ratio", "1.5"], 3, "ratio must be"),
        (["prune", m, "-o", o, "--target-macs", "0.0001"], 3, "cannot be met"),
        (["prune", m, "-o", o, "--target-params", "2"], 3, "target_params must be"),
        (["prune", m, "-o", o, "--criterion", "bogus"], 3, "unknown pruning criterion"),
        (["prune", m, "-o", o, "--criterion", "activation"], 3, "needs calibration data"),
        (["prune", m, "-o", o, "--override", "garbage"], 3, "bad --override"),
        (["prune", ws / "custom.onnx", "-o", o], 3, "nothing to prune"),
        (["prune", m, "-o", o, "--ratio", "abc"], 2, "Invalid value"),
        (["prune", m], 2, "Missing option"),
        (["quantize", m, "-o", o], 3, "no calibration data"),
        (["quantize", m, "-o", o, "--calib", g, "--mode", "bogus"], 3, "unknown mode 'bogus'"),
        (["quantize", m, "-o", o, "--calib", g, "--calibrator", "bogus"], 3, "unknown calibrator"),
        (["quantize", m, "-o", o, "--calib", g, "--max-drop", "-1"], 3, "max_drop must be"),
        (["quantize", m, "-o", o, "--calib", g, "--calibrator", "percentile", "--percentile", "200"], 3,
         "percentile must be"),
        (["quantize", ws / "custom.onnx", "-o", o, "--calib", g], 3, "MyRelu"),
        (["sensitivity", m, "--calib", g, "--prune-ratio", "2"], 3, "prune_ratio must be in [0, 1)"),
        (["distill", m, m, "-o", o, "--calib", g, "--ridge", "-1"], 3, "ridge must be"),
        (["distill", m, m, "-o", o, "--calib", g, "--kept", ws / "gate.toml"], 3, "kept-channel record"),
        (["distill", "attach", m, ws / "corrupt.npz", "-o", o], 3, "cannot read weights"),
        (["distill", "attach", m, ws / "gate.toml", "-o", o], 3, "unsupported weights file"),
        (["validate", m, ws / "custom.onnx", "--data", g], 3, "MyRelu"),
        (["validate", m, m, "--data", g, "--tolerance", "garbage"], 3, "bad tolerance"),
        (["validate", m, m, "--data", g, "--providers", "bogus"], 3, "unknown execution provider"),
        (["profile", m, "--batch", "x"], 3, "bad --batch"),
        (["profile", m, "--iterations", "0"], 3, "iterations must be"),
        (["gate", m, m, "--policy", ws / "missing.toml", "--data", g], 3, "not found"),
        (["gate", m, m, "--policy", ws / "bad_gate_key.toml", "--data", g], 3, "unknown key(s) ['min_cosin']"),
        (["gate", m, m, "--policy", m, "--data", g], 3, "not valid TOML"),
        (["optimize", m, "-o", o, "--recipe", ws / "missing.toml"], 3, "not found"),
        (["optimize", m, "-o", o, "--recipe", ws / "unknown_key.toml"], 3, "unknown recipe key(s) ['bogus']"),
        (["optimize", m, "-o", o, "--recipe", ws / "unknown_nested.toml"], 3, "unknown key(s) ['ratioo']"),
        (["optimize", m, "-o", o, "--recipe", ws / "bad_ratio.toml"], 3, "ratio must be"),
        (["optimize", m, "-o", o, "--recipe", ws / "bad_validate.toml"], 3, "batch_size must be"),
        (["optimize", m, "-o", o, "--recipe", ws / "syntax.toml"], 3, "cannot be parsed"),
        (["optimize", m, "-o", o, "--recipe", m], 3, "cannot be parsed"),  # a binary file
        (["optimize", m, "-o", o, "--recipe", g], 3, "cannot be parsed"),
        (["optimize", m, "-o", o, "--calib", g, "--eval", ws / "nan_late.npz", "--no-profile"], 3, "NaN/Inf"),
        (["optimize", m, "-o", o, "--calib", g, "--eval", ws / "wrong_key.npz", "--no-profile"], 3, "no data for"),
        (["optimize", ws / "custom.onnx", "-o", o, "--calib", g, "--no-profile"], 3, "MyRelu"),
        (["convert", m, "-o", o, "--opset", "99"], 3, "could not convert"),
        (["inspect", m, "--shape", "nope:1x3x8x8"], 3, "unknown input"),
        (["bogus-command"], 2, "No such command"),
    ]


@pytest.mark.parametrize("case", range(42))
def test_impossible_options_recipes_and_unsupported_models(case, ws, tmp_path):
    args, code, match = _bad_options(ws, tmp_path)[case]
    run_clean_failure(args, tmp_path, [ws / "m.onnx", ws / "good.npz"], expect=code, match=match)


def test_case_lists_are_fully_parametrized(ws, tmp_path):
    assert len(_bad_options(ws, tmp_path)) == 42 and len(_other_outputs(ws, tmp_path)) == 12


def test_api_output_checks_run_before_the_work(ws, tmp_path):
    shutil.copy(ws / "m.onnx", tmp_path / "in.onnx")
    before = _sha(tmp_path / "in.onnx")
    calls = [lambda: oc.prune(tmp_path / "in.onnx", output=tmp_path / "in.onnx"),
             lambda: oc.quantize(tmp_path / "in.onnx", ws / "good.npz", output=tmp_path / "in.onnx"),
             lambda: oc.optimize(tmp_path / "in.onnx", output=tmp_path / "in.onnx"),
             lambda: oc.prune(ws / "m.onnx", output=tmp_path / "nope" / "o.onnx")]
    for call in calls:
        with pytest.raises(OutputPathError) as e:
            call()
        assert e.value.exit_code == 3 and e.value.hint
    assert _sha(tmp_path / "in.onnx") == before and _listing(tmp_path) == ["in.onnx"]


# --- determinism ------------------------------------------------------------------------------------------------
def _bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_scale", "activation", "reconstruction", "random"])
def test_prune_is_deterministic(criterion, ws):
    config = oc.PruneConfig(ratio=0.5, criterion=criterion, seed=3, max_samples=16)
    runs = [_bytes(oc.prune(ws / "m.onnx", config, ws / "good.npz")[0]) for _ in range(2)]
    assert runs[0] == runs[1]
    if criterion == "random":  # the seed is what makes it reproducible, not a constant choice
        other = [_bytes(oc.prune(ws / "m.onnx", replace(config, seed=s), ws / "good.npz")[0]) for s in range(8)]
        assert len(set(other)) > 1


@pytest.fixture(scope="module")
def resnet_small(tmp_path_factory):
    """resnet_mnist with 64 calibration samples (keeps the calibrators fast)."""
    d = tmp_path_factory.mktemp("resnet")
    with np.load(bundled_data("resnet_mnist", "calib")) as z:
        np.savez(d / "calib.npz", input=z["input"][:64])
    return bundled_model("resnet_mnist"), d / "calib.npz"


@pytest.mark.parametrize("calibrator", ["minmax", "percentile", "entropy", "mse"])
def test_quantize_is_deterministic(calibrator, resnet_small):
    model, calib = resnet_small
    config = oc.QuantizeConfig(calibrator=calibrator)
    runs = [_bytes(oc.quantize(model, calib, config)[0]) for _ in range(2)]
    assert runs[0] == runs[1]


def test_distill_reconstruct_is_deterministic(resnet_small):
    model, calib = resnet_small
    pruned, report = oc.prune(model, oc.PruneConfig(ratio=0.5))
    config = oc.DistillConfig(samples=32)
    runs = [oc.distill(model, pruned, calib, config, kept=report.kept_channels()) for _ in range(2)]
    assert runs[0][1].reconstructed, "nothing was reconstructed"
    assert _bytes(runs[0][0]) == _bytes(runs[1][0])


def test_optimize_with_a_recipe_is_deterministic_and_independent_of_profiling(resnet_small):
    model, calib = resnet_small
    base = Recipe.from_dict({"seed": 1, "prune": {"ratio": 0.4, "criterion": "random"}, "distill": {"samples": 32},
                             "quantize": True, "gate": {"max_accuracy_drop": 0.5}})
    profiled = replace(base, validate=replace(base.validate, profile=replace(
        base.validate.profile, enabled=True, warmup=1, iterations=2, op_profile=False)))
    unprofiled = replace(base, validate=replace(base.validate, profile=replace(base.validate.profile, enabled=False)))
    outputs = [oc.optimize(model, recipe=r, calib=calib)[0] for r in (unprofiled, unprofiled, profiled)]
    assert any(n.op_type == "QuantizeLinear" for n in outputs[0].graph.node)
    assert len({_bytes(m) for m in outputs}) == 1


# --- the input is never modified ---------------------------------------------------------------------------------
def test_api_leaves_model_protos_unchanged(ws, tmp_path):
    model = graphs.conv_bn_head()
    teacher = graphs.conv_bn_head()
    pristine = _bytes(model)
    data = ws / "good.npz"
    pruned, report = oc.prune(model, oc.PruneConfig(ratio=0.5, criterion="activation"), data)
    student = _bytes(pruned)
    oc.distill(teacher, pruned, data, kept=report.kept_channels())
    assert _bytes(pruned) == student and _bytes(teacher) == pristine
    oc.quantize(model, data)
    oc.attach(model, ws / "m.onnx", data=data)
    oc.optimize(model, recipe=Recipe.from_dict({"prune": {"ratio": 0.3}, "quantize": True}), calib=data)
    oc.validate(model, pruned, data)
    oc.gate(model, pruned, data, oc.GatePolicy(min_cosine=0.0))
    oc.profile(model, vs=pruned, config=oc.ProfileConfig(warmup=1, iterations=2, op_profile=False))
    oc.inspect(model)
    assert _bytes(model) == pristine and _bytes(pruned) == student


def test_prune_ratio_and_target_together_is_an_error(tmp_path):
    from typer.testing import CliRunner

    from onnxcompress.cli import app
    from support.common import bundled_model

    r = CliRunner().invoke(app, ["prune", str(bundled_model("resnet_mnist")), "-o", str(tmp_path / "p.onnx"),
                                 "--ratio", "0.3", "--target-macs", "0.5"])
    assert r.exit_code == 3 and "not both" in r.output and list(tmp_path.iterdir()) == []
