"""Outputs you can trust, tried as a hostile user would: special files, outputs that collide with inputs (external
data included), with each other or with the report folder, full disks, unwritable folders, signals, concurrent
runs, closed pipes and the umask. Every failure: exit 3, one error line with a hint, no traceback, the output
folder unchanged, the inputs byte-identical (tests/support/clean.py).

Device nodes and FIFOs are made in the test's temporary folder (``os.mknod``/``os.mkfifo``), never real ones.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxcompress.ir import outputs
from onnxcompress.ir.external import read_array
from onnxcompress.ir.io import load_model
from support import graphs
from support.clean import invoke, listing, run_clean_failure, sha
from support.common import ROOT, ort_outputs

CLI = [sys.executable, "-c", "from onnxcompress.cli import main; main()"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile_out")
    model = graphs.conv_bn_head()
    onnx.save(model, d / "m.onnx")
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    np.savez(d / "good.npz", x=x, labels=ort_outputs(model, {"x": x})["y"].argmax(1).astype(np.int64))
    (d / "gate.toml").write_text("[gate]\nmin_cosine = 0.9\n")
    return d


def _cmd(name: str, ws: Path, out: Path, model: Path | None = None) -> list:
    m, g = model or ws / "m.onnx", ws / "good.npz"
    return {
        "convert": ["convert", m, "-o", out],
        "prune": ["prune", m, "-o", out],
        "distill": ["distill", ws / "m.onnx", m, "-o", out, "--calib", g, "--samples", "8"],
        "export-weights": ["distill", "export-weights", m, "-o", out],
        "attach": ["distill", "attach", m, ws / "m.onnx", "-o", out],
        "quantize": ["quantize", m, "-o", out, "--calib", g],
        "optimize": ["optimize", m, "-o", out, "--calib", g, "--no-profile"],
    }[name]


MODEL_OUTPUT = ["convert", "prune", "distill", "export-weights", "attach", "quantize", "optimize"]


def _special(kind: str, path: Path) -> Path:
    if kind == "chardev":
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    elif kind == "fifo":
        os.mkfifo(path)
    else:  # a symlink to a device node
        _special("chardev", path.with_name("dev"))
        path.symlink_to("dev")
    return path


def _still_special(path: Path, kind: str) -> bool:
    mode = os.stat(path).st_mode
    return stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)


# --- special files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["chardev", "fifo", "link"])
@pytest.mark.parametrize("cmd", MODEL_OUTPUT)
def test_special_file_outputs_are_refused(cmd, kind, ws, tmp_path):
    out = _special(kind, tmp_path / "out.onnx")
    word = "FIFO" if kind == "fifo" else "character device"
    run_clean_failure(_cmd(cmd, ws, out), tmp_path, [ws / "m.onnx", ws / "good.npz"], match=word)
    assert _still_special(out, kind)


@pytest.mark.parametrize("case", ["report-dir", "report", "trace", "dump-recipe"])
def test_special_report_trace_and_recipe_paths_are_refused(case, ws, tmp_path):
    m, g, o = ws / "m.onnx", ws / "good.npz", tmp_path / "o.onnx"
    rep = tmp_path / "rep"
    rep.mkdir()
    node = _special("fifo", rep / ("junit.xml" if case == "report-dir" else "x.json"))
    args = {"report-dir": ["validate", m, m, "--data", g, "--report-dir", rep],
            "report": ["quantize", m, "-o", o, "--calib", g, "--report", node],
            "trace": ["quantize", m, "-o", o, "--calib", g, "--max-drop", "0.5", "--trace", node],
            "dump-recipe": ["optimize", m, "-o", o, "--dump-recipe", rep / "r.toml", "--no-profile"]}[case]
    if case == "dump-recipe":
        node = _special("chardev", rep / "r.toml")
    run_clean_failure(args, tmp_path, [m, g], match="exists and is")
    assert _still_special(node, "fifo" if case != "dump-recipe" else "chardev")


# --- collisions -------------------------------------------------------------------------------------------------
def _external_copy(model_path: Path, out: Path, location: str) -> Path:
    model = onnx.load(str(model_path))
    onnx.save(model, out, save_as_external_data=True, location=location, size_threshold=0)
    return out


def test_an_output_is_never_an_inputs_external_data(ws, tmp_path):
    x = _external_copy(ws / "m.onnx", tmp_path / "x.onnx", "x.onnx.data")
    inputs = [x, tmp_path / "x.onnx.data"]
    run_clean_failure(["convert", x, "-o", tmp_path / "x.onnx.data"], tmp_path, inputs,
                      match="is also an input (external data of input")
    run_clean_failure(["quantize", x, "-o", tmp_path / "o.onnx", "--calib", ws / "good.npz",
                       "--report", tmp_path / "x.onnx.data", "--dump-recipe", tmp_path / "r.json"], tmp_path, inputs,
                      match="is also an input")
    # a.onnx keeps its weights in q.onnx.data: writing q.onnx (whose external data would be q.onnx.data) is refused
    a = _external_copy(ws / "m.onnx", tmp_path / "a.onnx", "q.onnx.data")
    run_clean_failure(["convert", a, "-o", tmp_path / "q.onnx"], tmp_path, [a, tmp_path / "q.onnx.data"],
                      match="external data of output model")
    assert load_model(x) and load_model(a)


def test_a_model_beside_another_models_data_file_leaves_it_alone(ws, tmp_path):
    a = _external_copy(ws / "m.onnx", tmp_path / "a.onnx", "q.onnx.data")
    before = sha(tmp_path / "q.onnx.data")
    for _ in range(2):  # also a rerun onto its own previous output
        r = invoke(["convert", ws / "m.onnx", "-o", tmp_path / "q.onnx"])
        assert r.exit_code == 0, r.output
    assert sha(tmp_path / "q.onnx.data") == before
    np.testing.assert_array_equal(read_array(load_model(a).graph.initializer[0]),
                                  onnx.numpy_helper.to_array(onnx.load(str(ws / "m.onnx")).graph.initializer[0]))


def test_outputs_that_collide_are_refused_before_any_work(ws, tmp_path):
    m, g, o, rep = ws / "m.onnx", ws / "good.npz", tmp_path / "o.onnx", tmp_path / "rep"
    shutil.copy(ws / "gate.toml", tmp_path / "junit.xml")  # a policy file named like a report file
    cases = [
        (["quantize", m, "-o", o, "--calib", g, "--report", o], "as output model and as --report"),
        (["quantize", m, "-o", o, "--calib", g, "--max-drop", "0.5", "--trace", o], "as output model and as --trace"),
        (["prune", m, "-o", o, "--report", tmp_path / "r.json", "--dump-recipe", tmp_path / "r.json"],
         "as --report and as --dump-recipe"),
        (["optimize", m, "-o", rep / "report.json", "--report-dir", rep, "--no-profile"], "report folder file"),
        (["optimize", m, "-o", o, "--report-dir", rep, "--dump-recipe", rep / "report.json", "--no-profile"],
         "as --dump-recipe and as report folder file report.json"),
        (["gate", m, m, "--policy", tmp_path / "junit.xml", "--data", g, "--report-dir", tmp_path],
         "is also an input"),
        (["optimize", m, "-o", o, "--report-dir", o, "--no-profile"], "is also the output model"),
        (["optimize", m, "-o", o, "--report-dir", tmp_path / "o.onnx.data" / "rep", "--no-profile"],
         "is also the external data of output model"),
    ]
    for args, match in cases:
        run_clean_failure(args, tmp_path, [m, g, tmp_path / "junit.xml"], match=match)


# --- optimize publishes one set -------------------------------------------------------------------------------
def test_optimize_publishes_model_reports_and_recipe_together(ws, tmp_path):
    out, rep = tmp_path / "o.onnx", tmp_path / "rep"
    r = invoke(["optimize", ws / "m.onnx", "-o", out, "--calib", ws / "good.npz", "--no-profile",
                "--report-dir", rep, "--dump-recipe", tmp_path / "r.toml"])
    assert r.exit_code == 0, r.output
    report = json.loads((rep / "report.json").read_text())
    assert report["models"]["candidate"]["sha256"] == sha(out)  # the exact bytes published
    assert report["models"]["candidate"]["bytes"] == out.stat().st_size
    assert listing(tmp_path) == ["o.onnx", "r.toml", "rep", "rep/junit.xml", "rep/report.html", "rep/report.json",
                                 "rep/report.md"]


@pytest.mark.parametrize("failing_write", [1, 2, 3, 4, 5])
def test_optimize_on_a_full_disk_leaves_nothing(failing_write, ws, tmp_path, monkeypatch):
    """The n-th staged file (model, report.json, report.md, junit.xml, recipe) hits ENOSPC: nothing appears."""
    writes = []

    def full_disk(f, chunk):
        writes.append(f.name)
        if len(writes) == failing_write:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        f.write(chunk)

    monkeypatch.setattr(outputs, "_write_all", full_disk)
    out = run_clean_failure(["optimize", ws / "m.onnx", "-o", tmp_path / "o.onnx", "--calib", ws / "good.npz",
                             "--no-profile", "--report-dir", tmp_path / "rep", "--dump-recipe", tmp_path / "r.toml"],
                            tmp_path, [ws / "m.onnx", ws / "good.npz"], match="No space left on device")
    assert "disk is full" in out


def test_optimize_report_folder_that_cannot_be_created_fails_before_the_work(ws, tmp_path):
    (tmp_path / "afile").write_text("x")
    run_clean_failure(["optimize", ws / "m.onnx", "-o", tmp_path / "o.onnx", "--no-profile",
                       "--report-dir", tmp_path / "afile" / "rep"], tmp_path, [ws / "m.onnx"], match="cannot be created")


def test_concurrent_optimize_runs_leave_a_report_that_matches_the_model(ws, tmp_path):
    """Two processes optimize different recipes to the same output at once: report.json and out.onnx agree."""
    for ratio in ("0.3", "0.6"):
        (tmp_path / f"r{ratio}.toml").write_text(f"quantize = false\n[prune]\nratio = {ratio}\n")
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()
    procs = [subprocess.Popen([*CLI, "optimize", str(ws / "m.onnx"), "-o", str(out), "--no-profile",
                               "--recipe", str(tmp_path / f"r{ratio}.toml")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for ratio in ("0.3", "0.6")]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    report = json.loads((out.parent / "o-report" / "report.json").read_text())
    assert report["models"]["candidate"]["sha256"] == sha(out)
    assert not [p for p in listing(out.parent) if Path(p).name.startswith(".")], "temporary files left"


# --- every command: full disk, unwritable folder, signals -----------------------------------------------------
@pytest.mark.parametrize("cmd", MODEL_OUTPUT)
def test_a_full_disk_is_a_user_error(cmd, ws, tmp_path, monkeypatch):
    def full_disk(f, chunk):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "_write_all", full_disk)
    out = run_clean_failure(_cmd(cmd, ws, tmp_path / "o.onnx"), tmp_path, [ws / "m.onnx", ws / "good.npz"],
                            match="No space left on device")
    assert "free some space" in out


def _world_readable_copy(ws: Path) -> Path:
    d = Path(tempfile.mkdtemp(prefix="onnxcompress-ro-"))
    os.chmod(d, 0o755)
    for name in ("m.onnx", "good.npz"):
        shutil.copy(ws / name, d / name)
        os.chmod(d / name, 0o644)
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)
    return d


def _invoke_unprivileged(args: list, warm_up: list) -> tuple[int, str]:
    """Run the CLI in a forked child that dropped root (root ignores permission bits); the child only gets as far
    as the output checks, before any onnxruntime work. ``warm_up`` (the same command failing the same way, run
    here first) imports what the command imports lazily: the child may not read this interpreter's files."""
    assert invoke(warm_up).exit_code == 3
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report (exit code, output) through the pipe, never return into pytest
        result = [99, ""]
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            r = invoke(args)
            result = [r.exit_code, r.output]
        except BaseException as e:  # any failure is reported to the parent
            result[1] = repr(e)
        finally:
            os.write(write, json.dumps(result).encode())
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 1 << 16):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    code, out = json.loads(data)
    return code, out


@pytest.mark.parametrize("cmd", ["convert", "quantize", "optimize"])
def test_an_unwritable_folder_is_a_user_error(cmd, ws):
    d = _world_readable_copy(ws)
    try:
        code, out = _invoke_unprivileged(_cmd(cmd, d, d / "ro" / "o.onnx"), _cmd(cmd, d, d / "nope" / "o.onnx"))
        assert code == 3, out
        assert ("not writable" in out or "Permission denied" in out) and "hint:" in out and "Traceback" not in out
        assert listing(d / "ro") == []
    finally:
        os.chmod(d / "ro", 0o755)
        shutil.rmtree(d)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_writing_removes_the_temporary_files(sig, code, ws, tmp_path, monkeypatch):
    def interrupted(f, chunk):
        f.write(chunk[: len(chunk) // 2])
        os.kill(os.getpid(), sig)  # the CLI's handler turns it into an exception right here

    def fallback(signum, frame):  # only reached if the CLI did not install its handler
        raise AssertionError("the CLI did not handle the signal")

    previous = signal.signal(sig, fallback)
    monkeypatch.setattr(outputs, "_write_all", interrupted)
    try:
        r = invoke(["optimize", ws / "m.onnx", "-o", tmp_path / "o.onnx", "--no-profile"])
    finally:
        signal.signal(sig, previous)
    assert r.exit_code == code and f"interrupted ({sig.name})" in r.output, r.output
    assert listing(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is not outputs.handle_signal  # restored after the command


def test_a_closed_pipe_ends_quietly(ws):
    """`onnxcompress inspect M | head`: the reader is gone before anything is written."""
    for args in (["inspect", str(ws / "m.onnx")], ["inspect", str(ws / "m.onnx"), "--json"]):
        p = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == 0 and err == "", err


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_outputs_honour_the_umask(umask, ws, tmp_path):
    old = os.umask(umask)
    try:
        r = invoke(["optimize", ws / "m.onnx", "-o", tmp_path / "o.onnx", "--no-profile"])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    for p in [tmp_path / "o.onnx", *(tmp_path / "o-report").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p
