"""Weights files: read/write .npz, .safetensors and .onnx initializers, the name mapping and the kept-channel
record (every failure a DataError that names the file and what it should have been)."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress.errors import DataError
from onnxcompress.ir.io import load_model, write_bytes_atomic
from onnxcompress.passes.artifacts import KeptChannels

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
    return {name: onnx.numpy_helper.to_array(t) for name, t in trainable_initializers(model).items()}


def save_npz_atomic(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> Path:


    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes_atomic(path, buf.getvalue())


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weights file: .npz, .safetensors or .onnx (its initializers)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"weights file not found: {path}", hint="check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".safetensors":
            return _read_safetensors(path)
        if suffix == ".onnx":

            model = load_model(path, check=False)
            return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise DataError(f"cannot read weights from {path}: {e}", hint="the file is corrupt or not of its type") from e
    raise DataError(f"unsupported weights file type '{suffix}' ({path})", hint="use .npz, .safetensors or .onnx")


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if spec["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"tensor {name} has unsupported dtype {spec['dtype']}")
        begin, end = spec["data_offsets"]
        arr = np.frombuffer(body[begin:end], dtype=SAFETENSORS_DTYPES[spec["dtype"]])
        out[name] = arr.reshape(spec["shape"]).copy()
    return out


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
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
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
    for section in ((data.get("stages") or {}).get("prune"), data.get("prune"), data):
        if isinstance(section, dict) and isinstance(section.get("kept"), list):
            return KeptChannels.from_records(section["kept"])
    if data and all(isinstance(v, list) for v in data.values()):
        return KeptChannels.from_mapping(data)
    raise DataError(f"{path} has no kept-channel record", hint='expected a prune report or {"tensor": [indices]}')
