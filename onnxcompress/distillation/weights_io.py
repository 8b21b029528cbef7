"""Weights files: read/write .npz, .safetensors and .onnx initializers, the name mapping and the kept-channel
record (every failure a DataError that names the file and what it should have been)."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress.data.limits import DataLimits, check_arrays, npz_headers
from onnxcompress.errors import DataError
from onnxcompress.ir.external import read_array
from onnxcompress.ir.io import load_model
from onnxcompress.ir.outputs import write_bytes
from onnxcompress.passes.artifacts import KeptChannels

log = logging.getLogger(__name__)

#: safetensors dtype names -> numpy
SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "I16": np.int16,
    "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def trainable_initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Floating-point initializers with more than one element: the weights a trainer produces.

    Integer tensors (shapes, axes, indices) and scalars are part of the architecture, not of the weights.
    """
    out = {}
    for t in model.graph.initializer:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        if np.dtype(dtype).kind == "f" and int(np.prod(t.dims)) > 1:
            out[t.name] = t
    return out


def export_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {name: read_array(t) for name, t in trainable_initializers(model).items()}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_npz_atomic(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    return write_bytes(path, npz_bytes(arrays)).path


def read_weights(path: str | os.PathLike, limits: DataLimits | None = None) -> dict[str, np.ndarray]:
    """Read a weights file: .npz, .safetensors or .onnx (its initializers); corrupt files are DataErrors."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"weights file not found: {path}", hint="check the path")
    if not path.is_file():
        raise DataError(f"weights path {path} is not a regular file", hint="give a .npz, .safetensors or .onnx file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            if not zipfile.is_zipfile(path):
                raise DataError(f"cannot read weights from {path}: not a .npz file (not a zip archive, or truncated)",
                                hint="write the weights with numpy.savez(path, name=array, ...)")
            check_arrays(npz_headers(path), limits or DataLimits(), str(path))
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".safetensors":
            return _read_safetensors(path, limits or DataLimits())
        if suffix == ".onnx":

            model = load_model(path, check=False)
            return {t.name: read_array(t) for t in model.graph.initializer}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read weights from {path}: {e}", hint="the file is corrupt or not of its type") from e
    raise DataError(f"unsupported weights file type '{suffix}' ({path})", hint="use .npz, .safetensors or .onnx")


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"cannot read weights from {path}: not a valid safetensors file: {what}",
                     hint="write it again with safetensors.numpy.save_file (or onnxcompress's write_safetensors)")


def _read_safetensors(path: Path, limits: DataLimits) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    if len(data) < 8:
        raise _corrupt(path, f"{len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise _corrupt(path, f"the header length {n} runs past the end of the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _corrupt(path, f"the header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise _corrupt(path, f"the header is a {type(header).__name__}, not an object")
    body = memoryview(data)[8 + n :]
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (begin, end) = _tensor_spec(path, name, spec, len(body))
        limits.check_bytes(end - begin, f"tensor '{name}' of {path}")
        out[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
    return out


def _tensor_spec(path: Path, name: str, spec: Any, body: int) -> tuple[np.dtype, list[int], tuple[int, int]]:
    """(dtype, shape, data offsets) of one header entry, each checked against the file."""
    if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= set(spec):
        raise _corrupt(path, f"tensor '{name}' needs dtype, shape and data_offsets, got {spec!r}")
    if spec["dtype"] not in SAFETENSORS_DTYPES:
        raise _corrupt(path, f"tensor '{name}' has unsupported dtype {spec['dtype']!r} "
                             f"(supported: {', '.join(SAFETENSORS_DTYPES)})")
    shape, offsets = spec["shape"], spec["data_offsets"]
    ints = lambda v: isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)
    if not ints(shape):
        raise _corrupt(path, f"tensor '{name}' has shape {shape!r}, not a list of non-negative integers")
    if not ints(offsets) or len(offsets) != 2 or not offsets[0] <= offsets[1] <= body:
        raise _corrupt(path, f"tensor '{name}' has data_offsets {offsets!r}, outside the {body}-byte data section")
    dtype = np.dtype(SAFETENSORS_DTYPES[spec["dtype"]])
    expected = math.prod(shape) * dtype.itemsize
    if offsets[1] - offsets[0] != expected:
        raise _corrupt(path, f"tensor '{name}' ({spec['dtype']}{shape}) needs {expected} bytes, its data_offsets "
                             f"span {offsets[1] - offsets[0]}")
    return dtype, shape, (offsets[0], offsets[1])


def write_safetensors(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Minimal safetensors writer (used by tests and by users without the safetensors package)."""
    names = {np.dtype(v): k for k, v in SAFETENSORS_DTYPES.items()}
    header, offset, blobs = {}, 0, []
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        blob = arr.tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def read_json(path: str | os.PathLike, what: str, hint: str) -> Any:
    """Parse a JSON file; an unreadable or malformed one is a DataError naming ``what`` it should have been."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise DataError(f"cannot read {what} {path}: {e}", hint=hint) from e


def load_mapping(path: str | os.PathLike | None) -> dict[str, str]:
    """A JSON object {model tensor name: name in the weights file}."""
    if path is None:
        return {}
    mapping = read_json(path, "mapping file", 'write a JSON object {"model_name": "file_name"}')
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise DataError(f"mapping file {path} must be a JSON object of strings", hint='{"conv1.weight": "w1", ...}')
    return mapping


def load_kept(path: str | os.PathLike | None) -> KeptChannels:
    """Kept channel indices from a JSON file: a report with a ``prune`` stage (report.json of `optimize`/`prune`),
    a prune report section, or a bare {tensor: [indices]} mapping."""
    if path is None:
        return KeptChannels()
    data = read_json(path, "kept-channel record", "give the prune report JSON")
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object", hint='expected a prune report or {"tensor": [indices]}')
    stages = data.get("stages")
    for section in ((stages or {}).get("prune") if isinstance(stages, dict) else None, data.get("prune"), data):
        if isinstance(section, dict) and isinstance(section.get("kept"), list):
            return KeptChannels.from_records(section["kept"])
    if data and all(isinstance(v, list) for v in data.values()):
        return KeptChannels.from_mapping(data)
    raise DataError(f"{path} has no kept-channel record", hint='expected a prune report or {"tensor": [indices]}')


def check_kept(kept: KeptChannels, teacher: onnx.ModelProto, student: onnx.ModelProto) -> None:
    """Every kept-channel record names a tensor of the student, and its indices exist in the teacher's tensor."""
    if not kept:
        return
    g = student.graph
    kept.check_tensors({o for n in g.node for o in n.output} | {i.name for i in g.input} | {t.name for t in g.initializer})
    try:
        inferred = onnx.shape_inference.infer_shapes(teacher).graph
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError) as e:  # no shapes: checked while fitting
        log.debug("no shape check of the kept channels: %s", e)
        return
    dims = {}
    for vi in [*inferred.value_info, *inferred.output, *inferred.input]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            dims[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    for tensor, idx in kept.kept.items():
        shape, axis = dims.get(tensor), kept.axes.get(tensor, 1)
        if not shape or not -len(shape) <= axis < len(shape) or shape[axis] is None:
            continue
        bad = [i for i in idx if i >= shape[axis]]
        if bad:
            raise DataError(f"kept channels {bad[:8]} of '{tensor}' are out of range: the teacher's tensor has "
                            f"{shape[axis]} channels on axis {axis}",
                            hint="give the kept-channel record of the prune run that produced this student from this "
                                 "teacher")
