"""convert-precision and the weight modes of quantize from the command line: exit codes (0, 1 below the floor with
the model still written, 3 on bad input), the report, optimize with a [precision] section, bytes per storage
format in inspect and the report, and the gate's max_size_mb counting external data."""

from __future__ import annotations

import json

import numpy as np
import onnx
from typer.testing import CliRunner

import onnxcompress as oc
from onnxcompress.cli import app
from onnxcompress.ir.io import save_model
from onnxcompress.recipe import Recipe
from support import wgraphs
from support.common import bundled_data, bundled_model, ort_outputs

runner = CliRunner()


def _npz(tmp_path, name: str, arrays: dict) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_convert_precision_writes_fp16_and_exits_0(tmp_path):
    out, report = tmp_path / "r16.onnx", tmp_path / "r16.json"
    r = runner.invoke(app, ["convert-precision", str(bundled_model("resnet_mnist")), "-o", str(out),
                            "--calib", str(bundled_data("resnet_mnist", "calib")), "--eval",
                            str(bundled_data("resnet_mnist", "eval")), "--samples", "64", "--verify-samples", "128",
                            "--report", str(report)])
    assert r.exit_code == 0, r.output
    assert "FP16 |" in r.output and "floor met" in r.output
    info = json.loads(report.read_text())
    assert info["passed"] and info["check"]["emulated"] and info["check"]["runtime_outputs"][0]["nonfinite"] == 0
    assert info["constant_bytes"]["after"]["float16"] * 2 == info["constant_bytes"]["before"]["float32"]
    assert {t.data_type for t in onnx.load(str(out)).graph.initializer} == {onnx.TensorProto.FLOAT16}


def test_convert_precision_exits_1_below_the_floor_and_still_writes(tmp_path):
    model = tmp_path / "chain.onnx"
    model.write_bytes(wgraphs.overflow_chain().SerializeToString())
    data = _npz(tmp_path, "x.npz", wgraphs.overflow_data(32))
    out = tmp_path / "chain16.onnx"
    r = runner.invoke(app, ["convert-precision", str(model), "-o", str(out), "--eval", data])  # no --calib: unguarded
    assert r.exit_code == 1, r.output
    assert out.exists() and "NOT MET" in r.output and "NaN/Inf" in r.output
    r = runner.invoke(app, ["convert-precision", str(model), "-o", str(out), "--calib", data])
    assert r.exit_code == 0, r.output
    assert "kept float32  MatMul_0 (MatMul): tensor 'h'" in r.output


def test_convert_precision_bad_input_is_exit_3(tmp_path):
    r = runner.invoke(app, ["convert-precision", str(bundled_model("vit_mnist")), "-o", str(tmp_path / "o.onnx"),
                            "--to", "fp8"])
    assert r.exit_code == 3 and "unknown precision 'fp8'" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["convert-precision", str(bundled_model("vit_mnist")), "-o",
                            str(bundled_model("vit_mnist"))])
    assert r.exit_code == 3 and "also an input" in r.output


def test_quantize_weight_only_cli(tmp_path):
    out, report = tmp_path / "w4.onnx", tmp_path / "w4.json"
    r = runner.invoke(app, ["quantize", str(bundled_model("vit_mnist")), "-o", str(out), "--mode", "weight_only",
                            "--weight-bits", "4", "--block-size", "16", "--min-weight-elements", "0",
                            "--node-bits", "re:head=8", "--report", str(report)])
    assert r.exit_code == 0, r.output
    assert "COMPRESSED | weight_only" in r.output and "MatMulNBits" in r.output
    info = json.loads(report.read_text())
    bits = {w["node"]: w["bits"] for w in info["weights"]["layers"]}
    assert bits["/head/Gemm"] == 8 and set(bits.values()) == {4, 8}
    formats = oc.inspect(str(out))["weights_by_format"]
    assert {"int4-packed", "int8-packed", "scales", "zero-points"} <= set(formats)
    r = runner.invoke(app, ["quantize", str(bundled_model("vit_mnist")), "-o", str(out), "--mode", "weight_only",
                            "--node-bits", "re:head"])
    assert r.exit_code == 3 and "--node-bits" in r.output


def test_optimize_with_a_precision_section(tmp_path):
    recipe = Recipe.from_dict({"precision": {"to": "fp16", "calibration_samples": 48, "verify_samples": 128},
                               "validate": {"profile": {"enabled": False}, "max_samples": 128}})
    _, report = oc.optimize(str(bundled_model("vit_mnist")), recipe=recipe,
                            calib=str(bundled_data("vit_mnist", "calib")), eval=str(bundled_data("vit_mnist", "eval")),
                            output=tmp_path / "v16.onnx")
    d = report.to_dict()
    assert report.passed and d["stages"]["precision"]["check"]["passed"]
    assert "quantize" not in d["stages"] and any("quantization skipped" in w for w in d["warnings"])
    assert any(c["name"] == "precision_floor" and c["passed"] for c in d["gate"]["criteria"])
    assert d["recipe"]["precision"]["to"] == "fp16" and d["recipe"]["quantize"] is False
    formats = d["models"]["candidate"]["weights_by_format"]
    assert "fp16" in formats and "fp32" not in formats and "fp32" in d["models"]["reference"]["weights_by_format"]
    assert "Weights by storage format" in report.to_markdown()
    assert [p["stage"] for p in d["passes"]][-2:] == ["precision", "precision"]
    Recipe.from_dict({k: v for k, v in d["recipe"].items()})  # the effective recipe reads back


def test_optimize_bf16_is_validated_on_the_twin_and_not_profiled(tmp_path):
    recipe = Recipe.from_dict({"precision": {"to": "bf16", "calibration_samples": 32, "verify_samples": 64},
                               "validate": {"max_samples": 64}})
    model, report = oc.optimize(str(bundled_model("resnet_mnist")), recipe=recipe,
                                calib=str(bundled_data("resnet_mnist", "calib")))
    assert report.profile is None and any("float32 twin" in w for w in report.warnings)
    assert report.stages.precision.check.emulated and report.passed


def test_gate_max_size_counts_external_data(tmp_path):
    model = wgraphs.linear_stack(k=256, n=256)
    path = save_model(model, tmp_path / "ext.onnx", external_data=True)
    file_mb = path.stat().st_size / 1e6
    data_mb = (tmp_path / "ext.onnx.data").stat().st_size / 1e6
    assert data_mb > 10 * file_mb
    data = wgraphs.correlated_inputs(16, k=256)
    report = oc.gate(path, path, data, oc.GatePolicy(max_size_mb=(file_mb + data_mb) * 0.99))
    crit = next(c for c in report.gate.criteria if c.name == "max_size_mb")
    assert not crit.passed and abs(crit.value - (file_mb + data_mb)) < 1e-6
    assert oc.gate(path, path, data, oc.GatePolicy(max_size_mb=(file_mb + data_mb) * 1.01)).passed
    np.testing.assert_allclose(ort_outputs(str(path), data)["y"], ort_outputs(model, data)["y"], rtol=1e-6)


def test_weight_only_int4_then_fp16_in_one_recipe(tmp_path):
    recipe = Recipe.from_dict({"quantize": {"mode": "weight_only", "block_size": 16, "min_weight_elements": 0},
                               "precision": {"to": "fp16", "calibration_samples": 32, "verify_samples": 64},
                               "validate": {"profile": {"enabled": False}, "max_samples": 64},
                               "gate": {"min_cosine": 0.99}})
    model, report = oc.optimize(str(bundled_model("vit_mnist")), recipe=recipe,
                                calib=str(bundled_data("vit_mnist", "calib")))
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert nbits and report.passed, report.gate.reasons
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert all(types[n.input[2]] == onnx.TensorProto.FLOAT16 for n in nbits), "scales follow the fp16 activations"
    formats = report.to_dict()["models"]["candidate"]["weights_by_format"]
    assert {"int4-packed", "scales", "fp16"} <= set(formats) and "fp32" not in formats
    x = np.load(bundled_data("vit_mnist", "eval"))["input"][:8]
    got = ort_outputs(model, {"input": x})["logits"]
    ref = ort_outputs(str(bundled_model("vit_mnist")), {"input": x})["logits"]
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_optimize_cli_with_a_precision_recipe(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[precision]\nto = "fp16"\ncalibration_samples = 32\nverify_samples = 64\n'
                      '[validate]\nmax_samples = 64\n[validate.profile]\nenabled = false\n')
    out, dumped = tmp_path / "o.onnx", tmp_path / "eff.toml"
    r = runner.invoke(app, ["optimize", str(bundled_model("resnet_mnist")), "-o", str(out), "--recipe", str(recipe),
                            "--calib", str(bundled_data("resnet_mnist", "calib")), "--dump-recipe", str(dumped)])
    assert r.exit_code == 0, r.output
    assert "precision_floor" in r.output and r.output.strip().splitlines()[-1].startswith("PASSED")
    assert Recipe.from_file(dumped).precision == oc.PrecisionConfig(calibration_samples=32, verify_samples=64)
    report = json.loads((tmp_path / "o-report" / "report.json").read_text())
    assert report["stages"]["precision"]["check"]["passed"]
