"""-v / -q / --log-file on every command, progress lines when stderr is not a terminal, the stage summary, the
GitHub job summary, and help text that renders (brackets kept, no <bool> on flags)."""

import logging
import re

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from onnxcompress.cli import app
from onnxcompress.cli.logs import PlainProgress
from onnxcompress.passes.progress import track
from support import graphs

runner = CliRunner()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    onnx.save(graphs.conv_bn_head(), d / "m.onnx")
    np.savez(d / "calib.npz", x=np.random.default_rng(0).standard_normal((40, 3, 8, 8)).astype(np.float32))
    return d


def optimize(case, tmp_path, *flags):
    return runner.invoke(app, ["optimize", str(case / "m.onnx"), "-o", str(tmp_path / "o.onnx"),
                               "--calib", str(case / "calib.npz"), "--no-profile", *flags])


def test_default_shows_plain_progress_lines_and_the_stage_summary(case, tmp_path):
    r = optimize(case, tmp_path, "--json")  # stderr of CliRunner is not a terminal: plain lines
    assert r.exit_code == 0, r.output
    assert "stage quantize" in r.stderr and "calibrate (minmax" in r.stderr and "batches in" in r.stderr
    assert "validate (reference and candidate): 2/2 batches" in r.stderr
    assert r.stdout.lstrip().startswith("{")  # progress never reaches stdout
    r = optimize(case, tmp_path)
    lines = r.stdout.splitlines()
    assert any(ln.startswith("quantize: static INT8 for target cpu") for ln in lines)
    assert any(re.match(r"preprocess: \d+ passes, changed by .*FoldBatchNorm", ln) for ln in lines)
    assert lines[-1].startswith("PASSED |")


def test_quiet_leaves_only_the_verdict(case, tmp_path):
    r = runner.invoke(app, ["-q", "optimize", str(case / "m.onnx"), "-o", str(tmp_path / "o.onnx"),
                            "--calib", str(case / "calib.npz"), "--no-profile"])
    assert r.exit_code == 0, r.output
    assert r.stderr == "" and r.stdout.strip().count("\n") == 0 and r.stdout.startswith("PASSED |")
    r = runner.invoke(app, ["quantize", str(case / "m.onnx"), "-o", str(tmp_path / "q.onnx"), "--calib",
                            str(case / "calib.npz"), "--placement", "fixed", "-q"])  # -q also works after the command
    assert r.exit_code == 0 and r.stderr == "" and r.stdout.startswith("QUANTIZED |") and r.stdout.count("\n") == 1


def test_verbose_shows_every_step_and_the_log_file_keeps_them(case, tmp_path):
    log = tmp_path / "run.log"
    r = optimize(case, tmp_path, "-v", "--log-file", str(log))
    assert r.exit_code == 0, r.output
    for step in ("INFO: stage preprocess", "INFO: preprocess/FoldBatchNormPass: modified", "INFO: calibrate (minmax",
                 "INFO: quantize/VerifyQuantizationPass"):
        assert step in r.stderr, step
    text = log.read_text()
    assert "onnxcompress 0.1.0 optimize" in text and "quantize/QuantizeQDQPass" in text
    assert text.splitlines()[0][:4].isdigit()  # timestamped
    r = runner.invoke(app, ["inspect", str(case / "m.onnx"), "--log-file", str(log)])
    assert r.exit_code == 0 and log.read_text().startswith(text) and "onnxcompress 0.1.0 inspect" in log.read_text()
    assert logging.getLogger("onnxcompress").handlers  # replaced per invocation, never stacked:
    assert len([h for h in logging.getLogger("onnxcompress").handlers if getattr(h, "_onnxcompress_cli", False)]) == 2
    assert runner.invoke(app, ["-q", "-v", "inspect", str(case / "m.onnx")]).exit_code == 2


def test_plain_progress_prints_periodically():
    now = [0.0]
    lines = []

    class Sink:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    progress = PlainProgress(Sink(), interval=5.0, clock=lambda: now[0])
    with track(progress, "calibrate", 10, "batches") as step:
        for _ in range(10):
            now[0] += 2.0
            step.advance()
    text = "".join(lines)
    assert "calibrate: 0/10 batches" in text and "calibrate: 3/10 batches (30%)" in text
    assert "calibrate: 10/10 batches in 20.0 s" in text and text.count("calibrate:") == 5  # start, 3 ticks, end


def test_github_step_summary(case, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    r = runner.invoke(app, ["optimize", str(case / "m.onnx"), "-o", str(tmp_path / "o.onnx"), "--calib",
                            str(case / "calib.npz"), "--no-profile"], env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.exit_code == 0, r.output
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "### onnxcompress optimize: PASSED |" in text
    assert "- quantize: static INT8" in text and "self-check passed" in text and "| floor[y] | PASS |" in text


def test_help_renders_brackets_and_no_bool_metavars():
    r = runner.invoke(app, ["gate", "--help"], terminal_width=200)
    assert "a [gate] table" in r.stdout and "[default: labels]" in r.stdout and "<bool>" not in r.stdout
    r = runner.invoke(app, ["optimize", "--help"], terminal_width=200)
    assert "<stem>-report" in r.stdout and "--no-verify" in r.stdout and "<bool>" not in r.stdout
    r = runner.invoke(app, ["--help"], terminal_width=200)
    assert "-v, --verbose" in r.stdout and "--log-file" in r.stdout
