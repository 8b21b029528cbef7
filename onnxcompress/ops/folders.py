"""Constant folders: op type -> numpy evaluation of a node whose inputs are all constants.

Keyed by (domain, op type, opset range) like every op registry; each folder handles both the attribute and the
input form of its arguments (e.g. ``axes`` before and after opset 13). Used by ``FoldConstantsPass``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ops.registry import OpRegistry

Folder = Callable[[gs.Node, list], np.ndarray]


def _attr(node: gs.Node, key: str, default=None):
    return node.attrs.get(key, default)


def _axes(node: gs.Node, inputs: list, index: int = 1) -> list[int] | None:
    """Axes from the input (opset >= 13) or the attribute (older opsets)."""
    if len(inputs) > index and inputs[index] is not None:
        return [int(a) for a in np.asarray(inputs[index]).reshape(-1)]
    axes = _attr(node, "axes")
    return None if axes is None else [int(a) for a in axes]


def _shape(node: gs.Node, inputs: list) -> np.ndarray:
    shape = np.asarray(inputs[0], dtype=np.int64)
    rank = shape.size
    start, end = int(_attr(node, "start", 0)), _attr(node, "end")
    start = start + rank if start < 0 else start
    end = rank if end is None else (int(end) + rank if int(end) < 0 else int(end))
    return shape[max(start, 0):max(min(end, rank), 0)]


def _slice(node: gs.Node, inputs: list) -> np.ndarray:
    data, starts, ends = inputs[0], inputs[1], inputs[2]
    axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts), np.int64)
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


def _unsqueeze(node: gs.Node, inputs: list) -> np.ndarray:
    axes = _axes(node, inputs)
    rank = inputs[0].ndim + len(axes)
    return np.expand_dims(inputs[0], tuple(sorted(a + rank if a < 0 else a for a in axes)))


def _squeeze(node: gs.Node, inputs: list) -> np.ndarray:
    axes = _axes(node, inputs)
    return np.squeeze(inputs[0]) if axes is None else np.squeeze(inputs[0], tuple(axes))


def _reshape(node: gs.Node, inputs: list) -> np.ndarray:
    data, shape = inputs[0], [int(d) for d in inputs[1]]
    if not int(_attr(node, "allowzero", 0)):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return data.reshape(shape)


def _div(node: gs.Node, inputs: list) -> np.ndarray:
    a, b = inputs
    if np.issubdtype(a.dtype, np.integer):  # ONNX integer Div truncates toward zero
        return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)
    return (a / b).astype(a.dtype)


def _cast(node: gs.Node, inputs: list) -> np.ndarray:
    return inputs[0].astype(onnx.helper.tensor_dtype_to_np_dtype(int(_attr(node, "to"))))


def _constant_of_shape(node: gs.Node, inputs: list) -> np.ndarray:
    value = _attr(node, "value")
    fill = value.values.reshape(-1) if isinstance(value, gs.Constant) else np.zeros(1, np.float32)
    return np.full([int(d) for d in inputs[0]], fill[0], dtype=fill.dtype)


def _same_dtype(fn: Callable) -> Callable:
    return lambda node, inputs: np.asarray(fn(*inputs)).astype(inputs[0].dtype)


_TABLE: dict[str, Folder] = {
    "Shape": _shape,
    "Size": lambda node, inputs: np.array(int(np.prod(inputs[0])), np.int64),
    "Gather": lambda node, inputs: np.take(inputs[0], inputs[1].astype(np.int64), axis=int(_attr(node, "axis", 0))),
    "Concat": lambda node, inputs: np.concatenate([i for i in inputs], axis=int(_attr(node, "axis"))),
    "Slice": _slice,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Flatten": lambda node, inputs: inputs[0].reshape(
        int(np.prod(inputs[0].shape[:int(_attr(node, "axis", 1))])), -1),
    "Cast": _cast,
    "Add": _same_dtype(np.add),
    "Sub": _same_dtype(np.subtract),
    "Mul": _same_dtype(np.multiply),
    "Div": _div,
    "Neg": _same_dtype(np.negative),
    "Sqrt": _same_dtype(np.sqrt),
    "Pow": _same_dtype(np.power),
    "Min": lambda node, inputs: np.minimum.reduce(np.broadcast_arrays(*inputs)).astype(inputs[0].dtype),
    "Max": lambda node, inputs: np.maximum.reduce(np.broadcast_arrays(*inputs)).astype(inputs[0].dtype),
    "Equal": lambda node, inputs: np.equal(*inputs),
    "Where": lambda node, inputs: np.where(*inputs).astype(inputs[1].dtype),
    "Expand": lambda node, inputs: inputs[0] * np.ones([int(d) for d in inputs[1]], inputs[0].dtype),
    "Transpose": lambda node, inputs: np.transpose(inputs[0], _attr(node, "perm")),
    "Range": lambda node, inputs: np.arange(inputs[0], inputs[1], inputs[2]).astype(inputs[0].dtype),
    "Identity": lambda node, inputs: inputs[0],
    "ConstantOfShape": _constant_of_shape,
}
#: (domain, op type, opset range) -> numpy evaluation (inputs: arrays, None for an omitted optional input)
FOLDERS: OpRegistry[Folder] = OpRegistry("constant folders")
for _op, _fn in _TABLE.items():
    FOLDERS.register(_op, _fn)

#: Shape/Size only need the input's (static) shape, not its value
SHAPE_ONLY = frozenset({"Shape", "Size"})


