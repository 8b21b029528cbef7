"""Attach student weights trained elsewhere onto a (compressed) graph, name/shape/dtype checked.

``export_weights`` writes the tensors a training framework must produce for this architecture (name -> array);
``attach_weights`` loads them back from ``.npz``, ``.safetensors`` or ``.onnx`` (initializers), matched by name or
through a mapping file, and lists every missing, extra, mis-shaped or mis-typed tensor in one error.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress.errors import DataError

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
    import io

    from onnxcompress.ir.io import write_bytes_atomic

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
            from onnxcompress.ir.io import load_model

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


@dataclass
class AttachProblems:
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    shape: list[str] = field(default_factory=list)
    dtype: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.shape or self.dtype)

    def describe(self) -> str:
        parts = []
        for label, items in (("missing", self.missing), ("extra (not in the model)", self.extra),
                             ("wrong shape", self.shape), ("wrong dtype", self.dtype)):
            if items:
                parts.append(f"{label}: " + "; ".join(items))
        return " | ".join(parts)


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


def attach_weights(model: onnx.ModelProto, weights: dict[str, np.ndarray], mapping: dict[str, str] | None = None,
                   *, allow_extra: bool = False) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """A copy of ``model`` with its trainable initializers replaced; every problem listed in one DataError."""
    mapping = dict(mapping or {})
    wanted = trainable_initializers(model)
    problems = AttachProblems()
    used: set[str] = set()
    new_values: dict[str, np.ndarray] = {}
    for name, t in wanted.items():
        src = mapping.get(name, name)
        if src not in weights:
            problems.missing.append(f"{name} {list(t.dims)}" + (f" (mapped from '{src}')" if src != name else ""))
            continue
        used.add(src)
        arr = np.asarray(weights[src])
        want_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
        if list(arr.shape) != list(t.dims):
            problems.shape.append(f"{name}: model {list(t.dims)}, file {list(arr.shape)}")
        elif arr.dtype != want_dtype:
            problems.dtype.append(f"{name}: model {want_dtype}, file {arr.dtype}")
        else:
            new_values[name] = arr
    if not allow_extra:
        problems.extra = sorted(set(weights) - used)
    if problems:
        raise DataError(
            f"the weights do not fit the model: {problems.describe()}",
            hint="export the expected names/shapes with `onnxcompress distill export-weights MODEL -o student.npz`, "
            "or give a --mapping JSON file {model_name: file_name}",
        )
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.name in new_values:
            t.CopyFrom(onnx.numpy_helper.from_array(new_values[t.name], t.name))
    return out, {"attached": sorted(new_values), "mapping": mapping, "ignored_extra": sorted(set(weights) - used)}
