"""Weights that stay on disk: models with external data are loaded without their tensors.

A model whose tensors live in external data files is loaded as its graph only (kilobytes for a multi-GB model).
Each external tensor keeps its ``offset``/``length`` and its ``location`` is re-anchored to the file system root
(``/work/models/m.onnx.data`` becomes ``work/models/m.onnx.data``, still a relative path as ONNX requires), so
any copy of the proto -- a probe model with extra outputs, a pruned graph, a teacher snapshot -- still knows where
its weights are, whatever the current directory. A tensor's values are read (one tensor at a time) only when a pass
asks for them; untouched tensors are never read, and onnxruntime sessions read them straight from the file
(:func:`onnxcompress.runtime.session.make_session` points them at the same root). Writers copy them into the
output's own data file (``ir/io``), so no output ever refers to the input's files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx.external_data_helper import ExternalDataInfo, uses_external_data
from onnx_graphsurgeon.ir.tensor import LazyValues

from onnxcompress.errors import ExternalDataError
from onnxcompress.runtime.session import EXTERNAL_ROOT

CHUNK = 1 << 24  # bytes per read when external tensors are copied into an output's data file
SMALL = 1 << 16  # external tensors below this are read at load (shapes, scales: shape inference needs their values)


def graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of a graph: initializers and tensor attributes, in subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from graph_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from graph_tensors(g)


def model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from graph_tensors(model.graph)


def is_lazy(t: onnx.TensorProto) -> bool:
    """The tensor's values are in an external file (not in memory)."""
    return uses_external_data(t) and not t.HasField("raw_data")


def has_lazy(model: onnx.ModelProto) -> bool:
    return any(is_lazy(t) for t in model_tensors(model))


def _set(t: onnx.TensorProto, key: str, value: str) -> None:
    for entry in t.external_data:
        if entry.key == key:
            entry.value = value
            return
    t.external_data.add(key=key, value=value)


def source_file(t: onnx.TensorProto) -> Path:
    """The absolute path of the file a lazy tensor's values are in."""
    return EXTERNAL_ROOT / ExternalDataInfo(t).location


def anchor(model: onnx.ModelProto, model_dir: Path) -> int:
    """Re-anchor every external tensor of ``model`` (loaded from ``model_dir`` without its data) to the root;
    returns the external bytes. Tensors under :data:`SMALL` bytes are read at once (a Reshape's shape must be known
    to shape inference). A missing or short data file is an :class:`ExternalDataError`."""
    total = 0
    sizes: dict[Path, int] = {}
    for t in model_tensors(model):
        if not uses_external_data(t):
            continue
        info = ExternalDataInfo(t)
        path = Path(os.path.realpath(model_dir / info.location))
        if path not in sizes:
            if not path.is_file():
                raise ExternalDataError(
                    f"tensor '{t.name}' points to external data file '{info.location}', which is missing",
                    hint=f"put '{info.location}' next to the model (in {model_dir}) or re-export with weights embedded")
            sizes[path] = path.stat().st_size
        length = info.length if info.length else _nbytes(t)
        if info.offset + length > sizes[path]:
            raise ExternalDataError(
                f"tensor '{t.name}' needs bytes {info.offset}..{info.offset + length} of '{info.location}', which "
                f"has {sizes[path]}", hint="the data file is truncated or belongs to another model; re-export it")
        _set(t, "location", str(path.relative_to(EXTERNAL_ROOT)))
        total += length
        if length < SMALL:
            materialize(t)
    return total


def _nbytes(t: onnx.TensorProto) -> int:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    n = int(np.prod(t.dims)) if len(t.dims) else 1
    bits = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4}.get(t.data_type, np.dtype(dtype).itemsize * 8)
    return (n * bits + 7) // 8


def tensor_nbytes(t: onnx.TensorProto) -> int:
    """Bytes of a tensor's values, without reading them."""
    if t.HasField("raw_data"):
        return len(t.raw_data)
    if uses_external_data(t):
        info = ExternalDataInfo(t)
        return int(info.length) if info.length else _nbytes(t)
    return onnx.numpy_helper.to_array(t).nbytes if t.data_type != 0 else 0


def read_array(t: onnx.TensorProto) -> np.ndarray:
    """The values of a tensor (read from its file when lazy); the proto is not modified."""
    return onnx.numpy_helper.to_array(t, base_dir=str(EXTERNAL_ROOT) if is_lazy(t) else "")


def read_chunks(t: onnx.TensorProto) -> Iterator[bytes]:
    """A lazy tensor's bytes, in chunks of at most :data:`CHUNK` (memory stays one chunk)."""
    info = ExternalDataInfo(t)
    remaining = int(info.length) if info.length else _nbytes(t)
    with open(source_file(t), "rb") as f:
        f.seek(int(info.offset))
        while remaining > 0:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                raise ExternalDataError(f"external data of tensor '{t.name}' ends early ({source_file(t)})",
                                        hint="the data file is truncated; re-export the model")
            remaining -= len(chunk)
            yield chunk


class FileValues(LazyValues):
    """gs values of a lazy tensor: read from its file on first use (gs exports the untouched proto as is)."""

    def load(self) -> np.ndarray:
        return np.array(read_array(self.tensor))


def adopt(graph: gs.Graph) -> None:
    """Make the lazy constants of an imported graph (and its subgraphs) read from their files."""
    stack = [graph]
    while stack:
        g = stack.pop()
        for t in g.tensors().values():
            _adopt(t)
        for node in g.nodes:
            for value in node.attrs.values():
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, gs.Graph):
                        stack.append(item)
                    elif isinstance(item, gs.Constant):
                        _adopt(item)


SOURCE_ATTR = "_onnxcompress_file_source"


def _adopt(t: gs.Tensor) -> None:
    values = getattr(t, "_values", None)
    if isinstance(t, gs.Constant) and type(values) is LazyValues and is_lazy(values.tensor):
        t._values = FileValues(values.tensor)
        t.data_location = None  # once loaded and changed, the values are exported inline (or to the output's file)
        setattr(t, SOURCE_ATTR, values.tensor)


def release(const: gs.Constant) -> bool:
    """Forget the loaded values of a constant whose values are on disk and that nothing uses any more (a weight
    replaced by its quantized copy), so a large model holds one float weight at a time; True if released."""
    source = getattr(const, SOURCE_ATTR, None)
    if source is None or const.outputs or isinstance(const._values, LazyValues):
        return False
    const._values = FileValues(source)
    return True


def checkable(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` for onnx.checker: its lazy initializers become typed graph inputs (the checker would look for
    their files relative to the current directory). Same graph, types and names; no values read."""
    if not has_lazy(model):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    lazy = [t for t in copy.graph.initializer if is_lazy(t)]
    inputs = {i.name for i in copy.graph.input}
    for t in lazy:
        if t.name not in inputs:
            copy.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    kept = [t for t in copy.graph.initializer if not is_lazy(t)]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    if has_lazy(copy):  # tensors in node attributes (Constant nodes): check them as empty-free placeholders
        _inline_placeholders(copy.graph)
    copy.ir_version = max(copy.ir_version, 4)  # initializers need not be inputs from IR 4 on
    return copy


def _inline_placeholders(graph: onnx.GraphProto) -> None:
    for t in graph_tensors(graph):
        if is_lazy(t):
            del t.external_data[:]
            t.ClearField("data_location")
            t.raw_data = b"\0" * _nbytes(t)  # only for the checker's copy: same type and shape, zero values


def materialize(t: onnx.TensorProto) -> None:
    """Read a lazy tensor's bytes into the proto (small tensors only; large ones are streamed by writers)."""
    raw = b"".join(read_chunks(t))
    del t.external_data[:]
    t.ClearField("data_location")
    t.raw_data = raw
