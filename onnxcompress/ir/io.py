"""The only module that reads and writes model files.

Loading checks the file and turns every failure into a typed error that says what to do. Writing is done by
:mod:`onnxcompress.ir.outputs` (outputs checked before any work, staged under temporary names, published
together); ``save_model``, ``write_text_atomic`` and the output checks are re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path, PurePath

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import version_converter

from onnxcompress.errors import (
    ExternalDataError,
    ModelFormatError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from onnxcompress.ir import outputs
from onnxcompress.ir.external import anchor, checkable
from onnxcompress.ir.outputs import PROTOBUF_LIMIT, external_locations, fits_protobuf, model_tensors, tensor_bytes

log = logging.getLogger(__name__)

#: The oldest IR version onnxcompress reads (IR 3 = ONNX 1.0 with opset imports).
MIN_IR_VERSION = 3
#: The oldest default-domain opset the passes are written for.
MIN_OPSET = 13

__all__ = ["MIN_IR_VERSION", "MIN_OPSET", "PROTOBUF_LIMIT", "check_model", "check_output", "check_output_dir",
           "convert_opset", "file_size", "load_model", "opset_of", "require_opset", "save_model", "sha256_file",
           "tensor_bytes", "write_bytes_atomic", "write_text_atomic"]


def load_model(path: str | os.PathLike, *, load_external_data: bool = True, check: bool = True) -> onnx.ModelProto:
    """Load and check an ONNX model; raise a :class:`ModelError` subclass that says what to do on failure."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"model file not found: {path}", hint="check the path; the file must exist")
    if path.is_dir():
        raise ModelFormatError(f"{path} is a directory, not an ONNX model file", hint="pass the path of a .onnx file")
    if not path.is_file():
        raise ModelFormatError(f"{path} is not a regular file (a device, FIFO or socket)",
                               hint="pass the path of a .onnx file")
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
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFormatError(f"cannot read {path}: {e.strerror or e}", hint="check the file's permissions") from e
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
    locations = external_locations(model)
    if not locations:
        return
    for loc in locations:
        _check_location(loc, path)
    try:  # the tensors stay on disk, re-anchored so that every copy of the proto finds them (ir/external.py)
        nbytes = anchor(model, path.parent)
    except (OSError, ValueError) as e:
        raise ExternalDataError(f"cannot read the external data of {path}: {e}",
                                hint="re-export the model (the external data file does not match it)") from e
    log.info("%s: %.1f MB of external data left on disk (each tensor is read when a pass needs it)", path,
             nbytes / 1e6)


def _check_location(loc: str, path: Path) -> None:
    """An external-data location must name a regular file inside the model's folder (what onnx accepts)."""
    pure = PurePath(loc)
    if not loc or pure.is_absolute() or loc.startswith(("/", "\\")) or ".." in pure.parts:
        raise ExternalDataError(
            f"{path} points to external data at '{loc}', outside the model's folder (onnx refuses absolute paths "
            "and '..')", hint=f"move the data file next to {path.name} and re-export with a relative location")
    target = path.parent / loc
    if not target.exists():
        raise ExternalDataError(
            f"{path} points to external data file '{loc}', which is missing",
            hint=f"put '{loc}' next to {path.name} (in {path.parent}) or re-export the model with weights embedded")
    if not target.is_file():
        raise ExternalDataError(f"{path} points to external data '{loc}', which is not a regular file",
                                hint="re-export the model with weights embedded")


def _check_names(graph: onnx.GraphProto, where: str) -> None:
    """Every name is text: protobuf hands out the bytes of a string field that is not UTF-8."""
    values = [graph.name, *(v.name for v in [*graph.input, *graph.output, *graph.value_info, *graph.initializer])]
    for node in graph.node:
        values += [node.name, node.op_type, node.domain, *node.input, *node.output, *(a.name for a in node.attribute)]
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _check_names(a.g, where)
            for g in a.graphs:
                _check_names(g, where)
    bad = next((v for v in values if isinstance(v, bytes)), None)
    if bad is not None:
        raise ModelFormatError(f"{where} holds a name that is not valid UTF-8 ({bad[:40]!r})",
                               hint="the file is corrupt; re-export the model")
    known = set(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}
    for vi in [*graph.input, *graph.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type not in known:
            raise ModelFormatError(f"{where}: {vi.name!r} has an unknown element type {vi.type.tensor_type.elem_type}",
                                   hint="the file is corrupt; re-export the model")


#: the TensorProto field that holds each data type's values when there is no raw_data, and values per element
_TYPED_FIELDS = {
    onnx.TensorProto.FLOAT: ("float_data", 1), onnx.TensorProto.DOUBLE: ("double_data", 1),
    onnx.TensorProto.INT64: ("int64_data", 1), onnx.TensorProto.UINT64: ("uint64_data", 1),
    onnx.TensorProto.UINT32: ("uint64_data", 1), onnx.TensorProto.COMPLEX64: ("float_data", 2),
    onnx.TensorProto.COMPLEX128: ("double_data", 2), onnx.TensorProto.STRING: ("string_data", 1),
    **{t: ("int32_data", 1) for t in (onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
                                      onnx.TensorProto.UINT16, onnx.TensorProto.UINT8, onnx.TensorProto.BOOL,
                                      onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)},
}


def check_tensor_sizes(model: onnx.ModelProto, path: str | os.PathLike | None = None) -> None:
    """Every tensor holds as many values as its dims declare (onnx's checker does not look); a
    :class:`ModelFormatError` names the first one that does not."""
    known = set(onnx.TensorProto.DataType.values())
    for t in model_tensors(model):
        if t.data_type not in known or t.data_type == onnx.TensorProto.UNDEFINED:
            raise _bad_tensor(t, path, f"has an unknown data type {t.data_type}")
        if any(d < 0 for d in t.dims):
            raise _bad_tensor(t, path, f"has a negative dimension {list(t.dims)}")
        count = math.prod(t.dims)
        if t.HasField("raw_data"):
            itemsize = _itemsize(t.data_type)
            if itemsize and len(t.raw_data) != count * itemsize:
                raise _bad_tensor(t, path, f"declares {list(t.dims)} ({count * itemsize} bytes) but holds "
                                           f"{len(t.raw_data)} bytes")
        elif t.data_type in _TYPED_FIELDS and not t.external_data:
            name, per = _TYPED_FIELDS[t.data_type]
            held = len(getattr(t, name))
            if held != count * per:
                raise _bad_tensor(t, path, f"declares {list(t.dims)} ({count} values) but holds {held // per}")


def _itemsize(data_type: int) -> int:
    """Bytes per element of a fixed-size type (0 for strings and sub-byte types, which are not checked)."""
    if data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return 0
    try:
        size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 0
    packed = {getattr(onnx.TensorProto, n, -1) for n in ("INT4", "UINT4", "INT2", "UINT2", "FLOAT4E2M1")}
    return 0 if data_type in packed else size


def _bad_tensor(t: onnx.TensorProto, path: str | os.PathLike | None, what: str) -> ModelFormatError:
    return ModelFormatError(f"tensor '{t.name}' of {path or 'the model'} {what}",
                            hint="the file is corrupt; re-export the model")


def _all_initializers(model: onnx.ModelProto):
    yield from model_tensors(model)


def check_model(model: onnx.ModelProto, path: str | os.PathLike | None = None, *, repair: bool = False) -> None:
    """onnx's full check (the checker and strict shape inference: declared shapes, types and attributes must agree
    with what the ops imply) plus the tensor sizes and names; a failure is a :class:`ModelFormatError`. With
    ``repair``, value_info entries without a shape or type (optional hints some exporters write badly) are dropped
    from ``model`` when they are the only problem."""
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
    check_tensor_sizes(model, path)
    _check_names(model.graph, where)
    try:
        if fits_protobuf(model):  # the checker serializes the model; past 2 GiB only the checks above run
            onnx.checker.check_model(checkable(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise ModelFormatError(f"{where} is not a valid ONNX model: {first}",
                               hint="re-export the model (onnx.checker.check_model(model, full_check=True) shows "
                                    "the problem)") from e
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


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool | None = None) -> Path:
    """Publish ``model`` at ``path`` (see :func:`onnxcompress.ir.outputs.save_model`)."""
    return outputs.save_model(model, path, external_data=external_data).path


def check_output(path: str | os.PathLike | None, *inputs: object) -> None:
    """Fail early (before any work) when ``path`` cannot be written or is one of ``inputs`` (or their external data)."""
    outputs.OutputPlan(inputs=inputs).model(path).check()


def check_output_dir(folder: str | os.PathLike | None, names: tuple[str, ...] = ()) -> None:
    """Fail early when the report folder ``folder`` cannot be created or written."""
    outputs.OutputPlan().folder(folder, names).check()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return outputs.write_bytes(path, data).path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return outputs.write_text(path, text).path


def file_size(path: str | os.PathLike) -> tuple[int, int]:
    """(model file bytes, external data bytes) for a saved model."""
    path = Path(path)
    ext = sum(p.stat().st_size for p in outputs.referenced_data_files(path) if p.is_file())
    return path.stat().st_size, ext


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
