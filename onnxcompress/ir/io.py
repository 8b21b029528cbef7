"""The only module that reads and writes model files.

Loading checks the file and turns every failure into a typed error that says what to do. Saving is atomic: the
model is written to a temporary file in the destination folder and renamed, so a failure never leaves a
half-written model behind, and the input file is never opened for writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import version_converter
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from onnxcompress.errors import (
    ExternalDataError,
    ModelFormatError,
    ModelNotFoundError,
    OutputPathError,
    UnsupportedModelError,
)

log = logging.getLogger(__name__)

#: The oldest IR version onnxcompress reads (IR 3 = ONNX 1.0 with opset imports).
MIN_IR_VERSION = 3
#: Protobuf cannot serialize a message larger than 2 GiB; past this weights go to an external data file.
PROTOBUF_LIMIT = 2**31 - 1
#: The oldest default-domain opset the passes are written for.
MIN_OPSET = 13


def load_model(path: str | os.PathLike, *, load_external_data: bool = True, check: bool = True) -> onnx.ModelProto:
    """Load and check an ONNX model; raise a :class:`ModelError` subclass that says what to do on failure."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"model file not found: {path}", hint="check the path; the file must exist")
    if path.is_dir():
        raise ModelFormatError(f"{path} is a directory, not an ONNX model file", hint="pass the path of a .onnx file")
    model = _parse(path)
    _check_ir(model, path)
    if load_external_data:
        _load_external(model, path)
    if _drop_untyped_value_info(model):  # hints without a shape hide the real shape of a graph output from gs
        log.info("%s: dropped value_info entries without a shape or type (optional hints)", path)
    if check:
        check_model(model, path, repair=True)
    return model


def _drop_untyped_value_info(model: onnx.ModelProto) -> int:
    """Remove value_info entries (optional shape hints) whose type or shape is missing; returns how many."""
    keep = [vi for vi in model.graph.value_info
            if (vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"))
            or vi.type.WhichOneof("value") not in (None, "tensor_type")]
    dropped = len(model.graph.value_info) - len(keep)
    if dropped:
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
    return dropped


def _parse(path: Path) -> onnx.ModelProto:
    data = path.read_bytes()
    if not data:
        raise ModelFormatError(f"{path} is empty", hint="re-export the model; the file has 0 bytes")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelFormatError(
            f"{path} is not a valid ONNX model (protobuf parse failed: {e})",
            hint="the file is corrupt, truncated or not ONNX; re-export or re-download it",
        ) from e
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelFormatError(
            f"{path} does not contain an ONNX graph",
            hint="the file is not an ONNX model (or is truncated); re-export it",
        )
    return model


def _check_ir(model: onnx.ModelProto, path: Path) -> None:
    if model.ir_version < MIN_IR_VERSION:
        raise UnsupportedModelError(
            f"{path} has IR version {model.ir_version}; onnxcompress reads IR >= {MIN_IR_VERSION}",
            hint="re-export the model with a current exporter",
        )
    if model.ir_version > onnx.IR_VERSION:
        raise UnsupportedModelError(
            f"{path} has IR version {model.ir_version}, newer than this onnx ({onnx.__version__}, IR {onnx.IR_VERSION})",
            hint="upgrade the onnx package (pip install -U onnx onnxruntime)",
        )


def _load_external(model: onnx.ModelProto, path: Path) -> None:

    if not any(uses_external_data(t) for t in _all_initializers(model)):
        return
    for t in _all_initializers(model):
        if not uses_external_data(t):
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), None)
        if loc is None or not (path.parent / loc).exists():
            raise ExternalDataError(
                f"tensor '{t.name}' of {path} points to external data file '{loc}', which is missing",
                hint=f"put '{loc}' next to {path.name} (in {path.parent}) or re-export the model with weights embedded",
            )
    try:
        load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as e:
        raise ExternalDataError(f"cannot read the external data of {path}: {e}", hint="re-export the model") from e


def _all_initializers(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


def check_model(model: onnx.ModelProto, path: str | os.PathLike | None = None, *, repair: bool = False) -> None:
    """Run onnx.checker; a failure is a :class:`ModelFormatError`. With ``repair``, value_info entries without a
    shape or type (optional hints some exporters write badly) are dropped from ``model`` when they are the only
    problem."""
    try:
        _check(model, path)
    except ModelFormatError:
        if not repair or not _drop_untyped_value_info(model):
            raise
        _check(model, path)
        log.warning("%s: dropped value_info entries without a shape or type (hints only); the model is valid",
                    path or "the model")


def _check(model: onnx.ModelProto, path: str | os.PathLike | None) -> None:
    where = f"{path}" if path else "the model"
    try:
        if model.ByteSize() < PROTOBUF_LIMIT:
            onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise ModelFormatError(f"{where} is not a valid ONNX model: {first}", hint="re-export the model") from e
    except ValueError as e:  # protobuf size errors surface as ValueError
        log.debug("checker skipped: %s", e)


def opset_of(model: onnx.ModelProto, domain: str = "") -> int:
    for imp in model.opset_import:
        if imp.domain in (domain, "ai.onnx" if domain == "" else domain):
            return imp.version
    return 0


def require_opset(model: onnx.ModelProto, minimum: int = MIN_OPSET, *, what: str = "this command") -> None:
    """Raise :class:`UnsupportedModelError` offering the version converter if the default opset is too old."""
    found = opset_of(model)
    if found < minimum:
        raise UnsupportedModelError(
            f"{what} needs opset >= {minimum}; the model uses opset {found}",
            hint=(
                f"convert it first: `onnxcompress convert MODEL -o OUT --opset {max(minimum, 17)}` "
                f"(or onnx.version_converter.convert_version(model, {max(minimum, 17)}))"
            ),
        )


def convert_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Convert to ``target`` with onnx's version converter; a failure is an :class:`UnsupportedModelError`.

    The IR version is raised first to one that can carry the target opset (the converter cannot resolve the
    initializer-inputs of IR 3 models otherwise); raising it only relaxes rules, it never changes the graph."""
    needed = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", target)], ignore_unknown=True)
    if model.ir_version < needed:
        raised = onnx.ModelProto()
        raised.CopyFrom(model)
        raised.ir_version = needed
        model = raised
    try:
        converted = version_converter.convert_version(model, target)
    except Exception as e:  # the converter raises bare RuntimeError/ConvertError from C++
        raise UnsupportedModelError(
            f"onnx's version converter could not convert opset {opset_of(model)} -> {target}: {e}",
            hint="re-export the model from its framework at a newer opset",
        ) from e
    check_model(converted, repair=True)
    return converted


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all initializers and Constant tensors (raw data or typed fields)."""
    total = 0
    for t in _all_initializers(model):
        if t.HasField("raw_data"):
            total += len(t.raw_data)
        else:
            total += onnx.numpy_helper.to_array(t).nbytes if t.data_type != 0 else 0
    return total


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool | None = None) -> Path:
    """Save atomically. External data is used when asked for or when the model exceeds protobuf's 2 GiB."""
    path = Path(path)
    _check_writable(path)
    if external_data is None:
        external_data = tensor_bytes(model) >= PROTOBUF_LIMIT - (1 << 24)
    if external_data:
        return _save_external(model, path)
    return write_bytes_atomic(path, model.SerializeToString())


def _save_external(model: onnx.ModelProto, path: Path) -> Path:
    """Write model + ``<name>.data`` to a temporary folder next to ``path``, then rename both into place."""
    data_name = path.name + ".data"
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        onnx.save_model(copy, str(tmpdir / path.name), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=0)
        if (tmpdir / data_name).exists():
            os.replace(tmpdir / data_name, path.parent / data_name)
        os.replace(tmpdir / path.name, path)
    finally:
        for p in tmpdir.glob("*"):
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            tmpdir.rmdir()
    return path


def _tmp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputPathError(f"output path {path} is a directory", hint="give a file name such as out.onnx")
    if not parent.is_dir():
        raise OutputPathError(f"output folder {parent} does not exist", hint=f"create it first: mkdir -p {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"output folder {parent} is not writable", hint="choose a folder you can write to")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"output file {path} exists and is read-only", hint="remove it or choose another name")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(path: str | os.PathLike | None, *inputs: object) -> None:
    """Fail early (before any work) when ``path`` cannot be written or is one of ``inputs``.

    ``inputs`` are the paths the command reads (``None`` and in-memory objects are ignored); writing onto one would
    modify the input, which onnxcompress never does.
    """
    if path is None:
        return
    path = Path(path)
    _check_writable(path)
    for src in inputs:
        if isinstance(src, (str, os.PathLike)) and _same_file(path, Path(src)):
            raise OutputPathError(f"output path {path} is also an input ({src}); the input is never overwritten",
                                  hint="write the result to a new file, e.g. model.opt.onnx")


def check_output_dir(folder: str | os.PathLike | None) -> None:
    """Fail early when the report folder ``folder`` is an existing file."""
    if folder is None:
        return
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"report folder {folder} is an existing file", hint="give a folder path")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place; nothing is left on failure."""
    path = Path(path)
    _check_writable(path)
    tmp = _tmp_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (report, recipe) atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def file_size(path: str | os.PathLike) -> tuple[int, int]:
    """(model file bytes, external data bytes) for a saved model."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)

    locations = set()
    for t in _all_initializers(model):
        if uses_external_data(t):
            locations.update(e.value for e in t.external_data if e.key == "location")
    ext = sum((path.parent / loc).stat().st_size for loc in locations if (path.parent / loc).exists())
    return path.stat().st_size, ext


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
