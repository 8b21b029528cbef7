"""The examples/release-gate workflow script, run as CI would run it: pass, fail (exit 1) and bad input (exit 3)."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest

from support import graphs
from support.common import ROOT, ort_outputs
from support.report_schema_check import report_errors

SCRIPT = ROOT / "examples" / "release-gate" / "run.sh"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("release")
    model = graphs.wide_cnn()  # wide enough that the default latency placement keeps its convolutions INT8
    onnx.save(model, d / "model.onnx")
    rng = np.random.default_rng(3)
    calib = rng.standard_normal((32, 3, 16, 16)).astype(np.float32)
    x = rng.standard_normal((64, 3, 16, 16)).astype(np.float32)
    np.savez(d / "calib.npz", x=calib)
    np.savez(d / "eval.npz", x=x, labels=ort_outputs(model, {"x": x})["y"].argmax(1))
    return d


def run(inputs: Path, out: Path, **env):
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(["bash", str(SCRIPT), str(inputs / "model.onnx"), str(inputs / "calib.npz"),
                           str(inputs / "eval.npz"), str(out)], capture_output=True, text=True,
                          env={**os.environ, "PATH": path, **env}, timeout=300)


def test_release_gate_passes_and_writes_ci_artifacts(inputs, tmp_path):
    r = run(inputs, tmp_path / "release")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("PASSED |")
    report = json.loads((tmp_path / "release" / "gate-report" / "report.json").read_text())
    assert report_errors(report) == [] and report["passed"] is True
    assert {c["name"] for c in report["gate"]["criteria"]} == {
        "max_accuracy_drop", "min_top1_agreement", "min_cosine", "min_int8_kernel_coverage"}
    suite = ET.parse(tmp_path / "release" / "gate-report" / "junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("tests") == "4"
    assert (tmp_path / "release" / "recipe.toml").exists() and (tmp_path / "release" / "candidate.onnx").exists()


def test_release_gate_fails_on_a_policy_the_candidate_misses(inputs, tmp_path):
    policy = tmp_path / "strict.toml"
    policy.write_text("[gate]\nmin_sqnr_db = 200.0\n")  # int8 cannot reach 200 dB
    r = run(inputs, tmp_path / "release", POLICY=str(policy))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL  min_sqnr_db" in r.stdout
    suite = ET.parse(tmp_path / "release" / "gate-report" / "junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"


def test_release_gate_bad_input_exits_3(inputs, tmp_path):
    policy = tmp_path / "typo.toml"
    policy.write_text("[gate]\nmin_sqnr = 20.0\n")
    r = run(inputs, tmp_path / "release", POLICY=str(policy))
    assert r.returncode == 3 and "min_sqnr" in r.stderr
