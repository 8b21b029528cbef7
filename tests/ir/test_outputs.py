"""ir.outputs: outputs planned and checked before work, staged under temporary names, published as one set.

Special files are made in the test's own folder (``os.mknod`` of a character device with /dev/null's numbers,
``os.mkfifo``), never a real system device.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxcompress.errors import OutputPathError
from onnxcompress.ir import outputs
from onnxcompress.ir.external import read_array
from onnxcompress.ir.io import load_model
from onnxcompress.ir.outputs import OutputPlan, file_mode, referenced_data_files, save_model, write_text
from support import graphs


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def chardev(path: Path) -> Path:
    """A character device node (the numbers of /dev/null) in a temporary folder."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


SPECIAL = {"chardev": chardev, "fifo": fifo}


@pytest.fixture
def model() -> onnx.ModelProto:
    return graphs.conv_bn_head()


@pytest.mark.parametrize("kind", ["chardev", "fifo", "link_to_chardev", "link_to_fifo"])
def test_special_files_are_refused_and_left_alone(kind, tmp_path, model):
    base = kind.removeprefix("link_to_")
    node = SPECIAL[base](tmp_path / base)
    target = node
    if kind.startswith("link_to_"):
        target = tmp_path / "link"
        target.symlink_to(node.name)
    before = _listing(tmp_path)
    word = {"chardev": "character device", "fifo": "FIFO"}[base]
    with pytest.raises(OutputPathError, match=f"is a {word}") as e:
        save_model(model, target)
    assert e.value.hint and _listing(tmp_path) == before
    assert stat.S_ISCHR(os.lstat(node).st_mode) if base == "chardev" else stat.S_ISFIFO(os.lstat(node).st_mode)
    with pytest.raises(OutputPathError, match=word):  # a report folder's file names are checked the same way
        OutputPlan().folder(tmp_path, [target.name]).check()


def test_a_symlink_to_a_regular_file_is_followed(tmp_path, model):
    (tmp_path / "real.onnx").write_bytes(b"old")
    (tmp_path / "link.onnx").symlink_to("real.onnx")
    save_model(model, tmp_path / "link.onnx")
    assert (tmp_path / "link.onnx").is_symlink()
    assert onnx.load(str(tmp_path / "real.onnx")) == model


def test_outputs_must_differ_from_each_other_and_from_the_report_folder(tmp_path):
    with pytest.raises(OutputPathError, match="written twice in one run: as output model and as --report"):
        OutputPlan().model(tmp_path / "o.onnx").file(tmp_path / "o.onnx", "--report").check()
    with pytest.raises(OutputPathError, match="external data of output model"):
        OutputPlan().model(tmp_path / "o.onnx").file(tmp_path / "o.onnx.data", "--trace").check()
    with pytest.raises(OutputPathError, match=r"report folder file report\.json"):
        OutputPlan().file(tmp_path / "rep" / "report.json", "--dump-recipe").folder(
            tmp_path / "rep", ["report.json", "report.md"]).check()
    assert _listing(tmp_path) == []


def _save_external(model: onnx.ModelProto, path: Path, location: str) -> None:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # onnx.save externalizes the model it is given
    onnx.save(copy, path, save_as_external_data=True, location=location, size_threshold=0)


def test_outputs_must_differ_from_inputs_and_their_external_data(tmp_path, model):
    _save_external(model, tmp_path / "x.onnx", "shared.bin")
    assert referenced_data_files(tmp_path / "x.onnx") == [tmp_path.resolve() / "shared.bin"]
    with pytest.raises(OutputPathError, match=r"is also an input \(external data of input"):
        OutputPlan([tmp_path / "x.onnx"]).file(tmp_path / "shared.bin").check()
    # a model output whose <out>.data is an input's external data would destroy it
    _save_external(model, tmp_path / "y.onnx", "q.onnx.data")
    with pytest.raises(OutputPathError, match=r"external data of output model .* is also an input"):
        OutputPlan([tmp_path / "y.onnx"]).model(tmp_path / "q.onnx").check()
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "a.npz", x=np.zeros(3))
    with pytest.raises(OutputPathError, match="a file of input folder"):
        OutputPlan(inputs=[tmp_path / "data"]).file(tmp_path / "data" / "a.npz").check()


def test_folders_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="cannot be created"):
        OutputPlan().folder(tmp_path / "file" / "rep", ["report.json"]).check()
    with pytest.raises(OutputPathError, match="does not exist"):
        OutputPlan().model(tmp_path / "nope" / "o.onnx").check()
    with pytest.raises(OutputPathError, match="is an existing file, not a folder"):
        OutputPlan().folder(tmp_path / "file", ["report.json"]).check()
    assert _listing(tmp_path) == ["file"]


def test_a_set_is_published_whole_or_not_at_all(tmp_path, model, monkeypatch):
    plan = OutputPlan().model(tmp_path / "o.onnx").folder(tmp_path / "rep" / "deep", ["a.txt", "b.txt"]).check()
    writes = []

    def full_disk(f, chunk):
        writes.append(len(chunk))
        if len(writes) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        f.write(chunk)

    monkeypatch.setattr(outputs, "_write_all", full_disk)
    with pytest.raises(OutputPathError, match="No space left on device") as e, plan.stage() as staged:
        staged.model(tmp_path / "o.onnx", model)
        staged.text(tmp_path / "rep" / "deep" / "a.txt", "a")
        staged.text(tmp_path / "rep" / "deep" / "b.txt", "b")
        staged.publish()
    assert "disk is full" in e.value.hint
    assert _listing(tmp_path) == []  # no model, no temporary file, the created report folders removed again
    monkeypatch.undo()
    with plan.stage() as staged:
        written = staged.model(tmp_path / "o.onnx", model)
        staged.text(tmp_path / "rep" / "deep" / "a.txt", "a")
        staged.text(tmp_path / "rep" / "deep" / "b.txt", "b")
        assert _listing(tmp_path / "rep" / "deep") != ["a.txt", "b.txt"]  # staged, not yet visible
        staged.publish()
    assert _listing(tmp_path / "rep") == ["deep", "deep/a.txt", "deep/b.txt"]
    assert written.sha256 == _sha(tmp_path / "o.onnx") and written.bytes == (tmp_path / "o.onnx").stat().st_size


def test_undeclared_outputs_are_a_bug(tmp_path, model):
    with pytest.raises(AssertionError, match="not declared"), OutputPlan().check().stage() as staged:
        staged.model(tmp_path / "o.onnx", model)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_get_the_mode_the_umask_allows(umask, tmp_path, model):
    old = os.umask(umask)
    try:
        assert file_mode() == 0o666 & ~umask
        save_model(model, tmp_path / "o.onnx", external_data=True)
        write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    for name in ("o.onnx", "o.onnx.data", "r.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_external_data_reruns_in_the_destination_folder(tmp_path, model, monkeypatch):
    """onnx checks the data location against the current directory: reruns from the output folder must work."""
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        save_model(model, "o.onnx", external_data=True)
        assert _listing(tmp_path) == ["o.onnx", "o.onnx.data"]
    loaded = load_model(tmp_path / "o.onnx")
    assert [read_array(t).tolist() for t in loaded.graph.initializer] == \
           [onnx.numpy_helper.to_array(t).tolist() for t in model.graph.initializer]
    save_model(model, "o.onnx")  # a smaller rerun: the stale data file of its own output goes
    assert _listing(tmp_path) == ["o.onnx"]
    assert model.graph.initializer[0].HasField("raw_data")  # the caller's model is never externalized


def test_another_models_data_file_is_never_touched(tmp_path, model):
    (tmp_path / "o.onnx.data").write_bytes(b"weights of another model")
    before = _sha(tmp_path / "o.onnx.data")
    save_model(model, tmp_path / "o.onnx")  # small: o.onnx.data is not o.onnx's, so it stays
    with pytest.raises(OutputPathError, match="is not the external data of"):
        save_model(model, tmp_path / "o.onnx", external_data=True)
    assert _sha(tmp_path / "o.onnx.data") == before and _listing(tmp_path) == ["o.onnx", "o.onnx.data"]


def test_concurrent_publishes_leave_one_complete_set(tmp_path, monkeypatch):
    """Set Y is published while set X is half-way through its renames: the folder lock makes Y wait, so the folder
    ends with all of Y (without the lock it would end with a mix of X and Y)."""
    real_replace = os.replace
    x_started = threading.Event()

    def slow_replace(src, dst):
        real_replace(src, dst)
        if threading.current_thread().name == "X":
            x_started.set()
            time.sleep(0.05)

    monkeypatch.setattr(outputs.os, "replace", slow_replace)
    names = ["a.txt", "b.txt", "c.txt"]
    plan = OutputPlan().folder(tmp_path, names).check()

    def publish(tag: str) -> None:
        if tag == "Y":
            assert x_started.wait(10)
        with plan.stage() as staged:
            for n in names:
                staged.text(tmp_path / n, tag)
            staged.publish()

    threads = [threading.Thread(target=publish, args=(tag,), name=tag) for tag in "XY"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(tmp_path / n).read_text() for n in names] == ["Y", "Y", "Y"] and _listing(tmp_path) == names


def test_signals_during_publish_are_deferred_until_the_set_is_complete(tmp_path, monkeypatch):
    plan = OutputPlan().folder(tmp_path, ["a", "b"]).check()
    real_replace = os.replace
    calls = []

    def replace_then_signal(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            outputs.handle_signal(15)  # what the CLI's SIGTERM handler does

    monkeypatch.setattr(outputs.os, "replace", replace_then_signal)
    with pytest.raises(KeyboardInterrupt) as e, plan.stage() as staged:
        staged.text(tmp_path / "a", "1")
        staged.text(tmp_path / "b", "2")
        staged.publish()
    assert e.value.signum == 15 and len(calls) == 2
    assert (tmp_path / "a").read_text() == "1" and (tmp_path / "b").read_text() == "2"
    assert _listing(tmp_path) == ["a", "b"]
