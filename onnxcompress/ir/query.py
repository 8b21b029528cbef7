"""Read-only questions about a gs.Graph: constants, producers, consumers."""

from __future__ import annotations

import fnmatch
import re

import numpy as np
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues


def constant_value(tensor: gs.Tensor):
    """The numpy value of a gs.Constant (or a Constant node's output); None for a variable."""
    const = _constant(tensor)
    return None if const is None else const.values


def _constant(tensor: gs.Tensor) -> gs.Constant | None:
    if isinstance(tensor, gs.Constant):
        return tensor
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant":
        attr = tensor.inputs[0].attrs.get("value")
        if isinstance(attr, gs.Constant):
            return attr
    return None


def is_constant(tensor: gs.Tensor) -> bool:
    """Is the tensor a constant (an initializer or a Constant node's output)? Its values are not read."""
    return _constant(tensor) is not None


def constant_shape(tensor: gs.Tensor) -> tuple[int, ...] | None:
    """The shape of a constant without reading its values (None for a variable)."""
    const = _constant(tensor)
    return None if const is None else tuple(int(d) for d in const.shape)


def is_graph_output(graph: gs.Graph, tensor: gs.Tensor) -> bool:
    return any(o is tensor or o.name == tensor.name for o in graph.outputs)


def single_consumer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.outputs[0] if len(tensor.outputs) == 1 else None


def initializer_map(model) -> dict:
    """name -> TensorProto of an onnx.ModelProto's initializers (the protos themselves, for in-place edits)."""
    return {t.name: t for t in model.graph.initializer}


# --- node selectors: one pattern language for every include/exclude/override option ------------------------------
_GLOB = set("*?[")


def node_matches(pattern: str, name: str | None, op_type: str) -> bool:
    """Does a selector match a node? ``re:<regex>`` searches the node name; a pattern with ``* ? [`` is a glob
    on the name; anything else is an exact node name or op type."""

    name = name or ""
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    if _GLOB & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in (name, op_type)


def selector_error(pattern: object) -> str | None:
    """Why ``pattern`` is not a valid selector (None if it is)."""

    if not isinstance(pattern, str) or not pattern:
        return f"selectors must be non-empty strings, got {pattern!r}"
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as e:
            return f"bad regex {pattern!r}: {e}"
    return None


def stored_bytes(values) -> int:
    """Bytes a constant takes in an ONNX file: 4-bit element types are packed two per byte."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and getattr(dtype, "name", "") in ("int4", "uint4"):
        return (int(np.prod(values.shape)) + 1) // 2
    return int(values.nbytes)


def constant_bytes(graph: gs.Graph) -> int:
    """Bytes of every constant tensor (initializers and Constant-node values) of ``graph``, as stored."""
    total = 0
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant):
            total += nbytes(t)
    for node in graph.nodes:
        value = node.attrs.get("value") if node.op == "Constant" else None
        if isinstance(value, gs.Constant):
            total += nbytes(value)
    return total


def nbytes(const: gs.Constant) -> int:
    """Bytes of a constant's values, without reading values that are still on disk."""
    values = const._values
    return stored_bytes(values if isinstance(values, LazyValues) else const.values)


def constant_bytes_by_dtype(graph: gs.Graph) -> dict[str, int]:
    """Stored bytes of the constant tensors of ``graph`` per element type (float32, float16, int4, uint8, ...)."""
    out: dict[str, int] = {}
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant):
            name = getattr(t._values.dtype, "name", str(t._values.dtype))
            out[name] = out.get(name, 0) + nbytes(t)
    return dict(sorted(out.items()))
