"""CLI acceptance for validate / profile / gate / optimize (typer's CliRunner), on a fixture CNN saved to disk.

Labels are the reference model's own predictions, so the reference scores 100% top-1 and a broken candidate
(perturbed weights) visibly loses accuracy and agreement.
"""

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress import api
from onnxcompress.cli import app
from onnxcompress.distillation import DistillConfig
from onnxcompress.recipe import Recipe
from support import graphs
from support.common import ROOT, ort_outputs
from support.report_schema_check import report_errors

runner = CliRunner()
ROOT_EXAMPLE = ROOT / "examples" / "release-gate"
FAST = ["--iterations", "3", "--warmup", "1"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("case")
    model = graphs.conv_bn_head()
    onnx.save(model, d / "ref.onnx")
    onnx.save(model, d / "same.onnx")
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    rng = np.random.default_rng(1)
    for init in broken.graph.initializer:
        if init.name in ("w1", "w2", "wf"):
            w = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array((w + rng.standard_normal(w.shape)).astype(w.dtype), init.name))
    onnx.save(broken, d / "broken.onnx")
    x = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    labels = ort_outputs(model, {"x": x})["y"].argmax(1).astype(np.int64)
    np.savez(d / "eval.npz", x=x, labels=labels)
    np.savez(d / "calib.npz", x=x[:32])
    (d / "gate.toml").write_text("[gate]\nmax_accuracy_drop = 0.01\nmin_top1_agreement = 0.95\nmin_cosine = 0.99\n")
    return d


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def last_line(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_gate_passes_equivalent_candidate(case, tmp_path):
    r = invoke("gate", case / "ref.onnx", case / "same.onnx", "--policy", case / "gate.toml", "--data",
               case / "eval.npz", "--report-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert last_line(r).startswith("PASSED |") and "top-1 100.0->100.0" in last_line(r)
    data = json.loads((tmp_path / "report.json").read_text())
    assert report_errors(data) == [] and data["passed"] is True and data["kind"] == "gate"
    assert data["models"]["reference"]["sha256"] == data["models"]["candidate"]["sha256"]
    assert data["data"]["evaluation"]["sha256"] and data["validation"]["extra_keys"] == ["labels"]
    assert data["environment"]["versions"]["onnxruntime"]
    assert (tmp_path / "junit.xml").exists() and (tmp_path / "report.md").exists()


def test_gate_fails_broken_candidate_and_lists_every_failure(case, tmp_path):
    r = invoke("gate", case / "ref.onnx", case / "broken.onnx", "--policy", case / "gate.toml", "--data",
               case / "eval.npz", "--report-dir", tmp_path)
    assert r.exit_code == 1, r.output
    assert last_line(r).startswith("FAILED |")
    data = json.loads((tmp_path / "report.json").read_text())
    assert report_errors(data) == [] and data["passed"] is False
    failed = [c["name"] for c in data["gate"]["criteria"] if not c["passed"]]
    assert failed == ["max_accuracy_drop", "min_top1_agreement", "min_cosine"]
    assert len(data["gate"]["failed"]) == 3
    assert 'failures="3"' in (tmp_path / "junit.xml").read_text()
    for reason in data["gate"]["failed"]:
        assert f"FAIL  {reason}" in r.stdout


def test_gate_user_errors_exit_3(case, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gate]\nmin_speed = 2\n")
    r = invoke("gate", case / "ref.onnx", case / "same.onnx", "--policy", bad, "--data", case / "eval.npz",
               "--report-dir", tmp_path)
    assert r.exit_code == 3 and "min_speed" in r.output and "Traceback" not in r.output
    r = invoke("gate", case / "ref.onnx", case / "same.onnx", "--policy", case / "gate.toml", "--data",
               tmp_path / "nope.npz", "--report-dir", tmp_path)
    assert r.exit_code == 3 and "not found" in r.output


def test_validate_metrics_tolerances_and_strict(case):
    r = invoke("validate", case / "ref.onnx", case / "broken.onnx", "--data", case / "eval.npz", "--json",
               "--tolerance", "atol=1e-3")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert report_errors(data) == []
    v = data["validation"]
    assert v["samples"] == 64 and v["metrics"] == ["top1", "top5", "f1"]
    assert v["task"]["reference"]["top1"] == 1.0 and v["task"]["candidate"]["top1"] < 0.9
    assert v["comparison"]["y"]["passed"] is False and v["comparison"]["y"]["atol"] == 1e-3
    r = invoke("validate", case / "ref.onnx", case / "broken.onnx", "--data", case / "eval.npz", "--strict")
    assert r.exit_code == 1 and "compare y: FAIL" in r.stdout
    r = invoke("validate", case / "ref.onnx", case / "same.onnx", "--data", case / "eval.npz", "--strict",
               "--tolerance", "y:atol=0,rtol=0")
    assert r.exit_code == 0 and "compare y: PASS" in r.stdout


def test_profile_interleaved_and_cuda_error(case, tmp_path):
    r = invoke("profile", case / "broken.onnx", "--vs", case / "ref.onnx", "--batch", "1,4", *FAST,
               "--report-dir", tmp_path)
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert report_errors(data) == []
    assert [b["batch_size"] for b in data["profile"]["batches"]] == [1, 4]
    assert data["profile"]["batches"][0]["speedup_p50"] > 0
    assert data["profile"]["providers"] == ["CPUExecutionProvider"]  # auto picks CPU here
    assert "speed-up" in r.stdout and "A/B rounds" in r.stdout
    r = invoke("profile", case / "ref.onnx", "--providers", "cuda")
    assert r.exit_code == 3 and "CUDAExecutionProvider" in r.output and "--providers cpu" in r.output
    r = invoke("profile", case / "ref.onnx", "--batch", "1,x")
    assert r.exit_code == 3


def test_optimize_writes_model_report_and_recipe(case, tmp_path):
    out = tmp_path / "opt.onnx"
    r = invoke("optimize", case / "ref.onnx", "-o", out, "--calib", case / "calib.npz",
               "--dump-recipe", tmp_path / "effective.toml")
    report_dir = tmp_path / "opt-report"
    data = json.loads((report_dir / "report.json").read_text())
    # this 8x8 CNN runs in ~10 us: int8 makes it slower, and the default gate says so (exit 1, outputs written)
    slower = [c for c in data["gate"]["criteria"] if c["name"] == "not_slower"]
    assert slower and r.exit_code == (0 if slower[0]["passed"] else 1), r.output
    assert last_line(r).startswith("PASSED |" if slower[0]["passed"] else "FAILED |") and "agreement" in last_line(r)
    assert all(c["passed"] for c in data["gate"]["criteria"] if c["name"] != "not_slower")
    assert report_errors(data) == []
    assert data["models"]["candidate"]["path"] == str(out) and out.exists()
    assert any("calibration data" in w for w in data["warnings"])  # eval falls back to calib, recorded
    assert data["data"]["evaluation"]["is_calibration_data"] is True
    assert [p["name"] for p in data["passes"]][:6] == ["ConvertOpsetPass", "LiftConstantsPass", "InferShapesPass",
                                                     "FoldConstantsPass", "FoldBatchNormPass", "CleanupPass"]
    assert {p["stage"] for p in data["passes"][:6]} == {"preprocess"}
    names = [p["name"] for p in data["passes"]]
    assert len(names) == len(set(names))  # each pass recorded once
    assert any(d["action"] == "folded" for d in data["decisions"])
    # INT8 only where it pays: on this 8x8 fixture no plan is faster, so the float model is kept, and said so
    assert data["stages"]["quantize"]["placement"]["faster"] is False
    assert any("no INT8 plan is faster" in w for w in data["warnings"])
    gate = data["recipe"]["gate"]  # the default policy, written out
    assert gate["fidelity_floors"] is True and gate["not_slower"] is True and gate["min_top1_agreement"] is None
    effective = Recipe.from_file(tmp_path / "effective.toml")
    assert effective.to_dict() == data["recipe"]
    types = {n.op_type for n in onnx.load(out).graph.node}
    assert "QuantizeLinear" not in types  # the published model is the float one the placement kept


def test_optimize_with_recipe_failing_gate_still_writes_outputs(case, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("quantize = false\n[validate.profile]\niterations = 3\nwarmup = 1\nop_profile = false\n"
                      "[gate]\nmin_speedup = 1000.0\n")
    out = tmp_path / "m.onnx"
    r = invoke("optimize", case / "ref.onnx", "-o", out, "--eval", case / "eval.npz", "--recipe", recipe,
               "--report-dir", tmp_path / "rep")
    assert r.exit_code == 1, r.output
    assert out.exists() and (tmp_path / "rep" / "report.json").exists()
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["gate"]["failed"][0].startswith("min_speedup:") and "quantize" not in data["stages"]
    assert last_line(r).startswith("FAILED |")


def test_optimize_user_errors(case, tmp_path):
    r = invoke("optimize", case / "ref.onnx", "-o", tmp_path / "x.onnx", "--providers", "cuda")
    assert r.exit_code == 3 and "not available" in r.output
    assert not (tmp_path / "x.onnx").exists()
    bad = tmp_path / "r.toml"
    bad.write_text("[quantize]\ncalibrator = 'minmax'\n")
    r = invoke("optimize", case / "ref.onnx", "-o", tmp_path / "x.onnx", "--recipe", bad)
    assert r.exit_code == 3 and "calibration data" in r.output


def test_python_api_user_metric_and_model_protos(case):
    model = onnx.load(case / "ref.onnx")
    cand, report = api.optimize(model, calib=case / "calib.npz", eval=case / "eval.npz",
                                recipe=Recipe.from_dict({"validate": {"profile": {"enabled": False}}}))
    assert isinstance(cand, onnx.ModelProto) and report.passed is True and report.profile is None
    mean_logit = lambda outputs, extras: float(outputs["y"].mean())
    rep = api.validate(model, model, case / "eval.npz", user_metrics={"mean_logit": mean_logit})
    task = rep.validation.task.to_dict()
    assert task["reference"]["mean_logit"] == pytest.approx(task["candidate"]["mean_logit"])
    x = np.load(case / "eval.npz")["x"]
    assert task["reference"]["mean_logit"] == pytest.approx(float(ort_outputs(model, {"x": x})["y"].mean()), rel=1e-5)


def test_full_pipeline_prune_distill_quantize(case):
    recipe = Recipe.from_dict({"seed": 3, "prune": {"ratio": 0.25}, "distill": True,
                               "quantize": {"placement": "fixed"},  # every quantizable node INT8 (tiny fixture)
                               "validate": {"profile": {"enabled": False}},
                               "gate": {"max_accuracy_drop": 0.05, "min_int8_kernel_coverage": 0.5}})
    cand, report = api.optimize(case / "ref.onnx", recipe=recipe, calib=case / "calib.npz", eval=case / "eval.npz")
    assert list(dict.fromkeys(p.stage for p in report.passes)) == ["preprocess", "prune", "distill", "quantize"]
    assert report.passed is True, report.gate.reasons
    names = [p.name for p in report.passes]
    # the gate's accuracy criterion makes quantization a mixed-precision search; its final build is in its stats
    assert "TuneQuantizationPass" in names and "PruneChannelsPass" in names and "ReconstructPass" in names
    search = next(p for p in report.passes if p.name == "TuneQuantizationPass")
    assert "QuantizeQDQPass" in [r["name"] for r in search.stats["final_build"]]
    assert len(names) == len(set(names))  # every pass recorded once, distillation included
    assert report.recipe.prune.ratio == 0.25 and report.recipe.seed == 3
    again, _ = api.optimize(case / "ref.onnx", recipe=recipe, calib=case / "calib.npz", eval=case / "eval.npz")
    assert again.SerializeToString() == cand.SerializeToString()  # deterministic
    assert "onnxcompress.quantization" in {p.key for p in cand.metadata_props}  # what it was built for
    x = np.load(case / "eval.npz")["x"][:8]
    ours = api.validate(case / "ref.onnx", cand, {"x": x}).validation.fidelity["y"]
    assert ours.max_abs_error == pytest.approx(
        float(np.abs(ort_outputs(onnx.load(case / "ref.onnx"), {"x": x})["y"] - ort_outputs(cand, {"x": x})["y"]).max()),
        rel=1e-4)


@pytest.mark.parametrize("distill", ["absent", False])
def test_reconstruction_runs_automatically_after_pruning(case, distill):
    data = {"prune": {"ratio": 0.25}, "quantize": False, "validate": {"profile": {"enabled": False}}}
    if distill != "absent":
        data["distill"] = distill
    _, report = api.optimize(case / "ref.onnx", recipe=Recipe.from_dict(data), calib=case / "calib.npz",
                             eval=case / "eval.npz")
    decisions = [d for d in report.decisions if d.subject == "distill"]
    if distill == "absent":  # "auto": reconstruct after pruning when calibration data is given, and say so
        assert report.stages.distill is not None and decisions[0].action == "auto"
        assert isinstance(report.recipe.distill, DistillConfig)  # the effective recipe names the config used
    else:
        assert report.stages.distill is None and report.recipe.distill is None


@pytest.mark.parametrize("name", ["resnet_mnist", "vit_mnist"])
def test_interleaved_comparison_on_bundled_models(name, tmp_path):
    from support.common import bundled_data, bundled_model

    if not bundled_model(name).exists():
        pytest.skip(f"bundled model {name} not built yet (models/build_*.py)")
    r = invoke("profile", bundled_model(name), "--vs", bundled_model(name), "--batch", "1,8", "--data",
               bundled_data(name, "eval"), "--threads", "1", *FAST, "--report-dir", tmp_path)
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert report_errors(data) == []
    for b in data["profile"]["batches"]:
        rounds = b["speedup"]
        assert set(b["models"]) == {"reference", "candidate"}
        assert b["models"]["candidate"]["runs"] == rounds["rounds"] * rounds["runs_per_round"] >= 5
        assert 0.2 < b["speedup_p50"] < 5  # the same model against itself
    ops = data["profile"]["op_profile"]["reference"]["op_type_time"]
    assert sum(v["share"] for v in ops.values()) == pytest.approx(1.0)
    r = invoke("gate", bundled_model(name), bundled_model(name), "--policy",
               ROOT_EXAMPLE / "gate.toml", "--data", bundled_data(name, "eval"), "--max-samples", "200",
               "--report-dir", tmp_path / "g")
    # an fp32 model is its own equivalent: accuracy, agreement and cosine pass; it has no int8 kernels
    data = json.loads((tmp_path / "g" / "report.json").read_text())
    failed = [c["name"] for c in data["gate"]["criteria"] if not c["passed"]]
    assert r.exit_code == 1 and failed == ["min_int8_kernel_coverage"]
