"""Cost model: MACs per op type at concrete input shapes and parameters per dtype (for ``inspect`` and for the
pruner's MACs/parameter targets)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import onnx

from onnxcompress.ir.external import tensor_nbytes
from onnxcompress.ir.shapes import infer_shapes, known_shapes, with_input_shapes

Shapes = dict[str, tuple]


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def _prod(shape) -> int:
    return int(math.prod(shape))


def _conv_macs(node: onnx.NodeProto, s: Shapes) -> int | None:
    w, y = s.get(node.input[1]), s.get(node.output[0])
    return _prod(y) * _prod(w[1:]) if _known(w) and _known(y) else None


def _conv_transpose_macs(node: onnx.NodeProto, s: Shapes) -> int | None:
    x, w = s.get(node.input[0]), s.get(node.input[1])
    return _prod(x) * _prod(w[1:]) if _known(x) and _known(w) else None


def _gemm_macs(node: onnx.NodeProto, s: Shapes) -> int | None:
    a, y = s.get(node.input[0]), s.get(node.output[0])
    trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
    if not (_known(a) and _known(y)):
        return None
    return _prod(y) * (a[0] if trans_a else a[1])


def _matmul_macs(node: onnx.NodeProto, s: Shapes, a_index: int = 0) -> int | None:
    a, y = s.get(node.input[a_index]), s.get(node.output[0])
    if not (_known(a) and y is not None and _known(y)):
        return None
    return _prod(y) * a[-1]


def _qlinear_conv_macs(node: onnx.NodeProto, s: Shapes) -> int | None:
    w, y = s.get(node.input[3]), s.get(node.output[0])
    return _prod(y) * _prod(w[1:]) if _known(w) and _known(y) else None


#: op type -> MAC counter (multiply-accumulates of the main product; bias adds are not counted)
MAC_RULES: dict[str, Callable[[onnx.NodeProto, Shapes], int | None]] = {
    "Conv": _conv_macs,
    "ConvInteger": _conv_macs,
    "QLinearConv": _qlinear_conv_macs,
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": _matmul_macs,
    "MatMulInteger": _matmul_macs,
    "QLinearMatMul": _matmul_macs,
    "MatMulNBits": _matmul_macs,
}


def count_macs(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None,
               sample: dict[str, Any] | None = None) -> dict[str, Any]:
    """MACs per op type for concrete input shapes (dynamic dims default to 1); shapes static inference cannot
    resolve are observed in one run on ``sample`` (a batch of one) when given."""
    shaped = infer_shapes(with_input_shapes(model, input_shapes or {}))
    shapes = known_shapes(model, input_shapes, sample)
    by_op: Counter[str] = Counter()
    unknown: list[str] = []
    for node in shaped.graph.node:
        rule = MAC_RULES.get(node.op_type)
        if rule is None:
            continue
        macs = rule(node, shapes)
        if macs is None:
            unknown.append(node.name or node.output[0])
        else:
            by_op[node.op_type] += macs
    used = {i.name: list(shapes.get(i.name, ())) for i in shaped.graph.input if i.name in shapes}
    return {"total": int(sum(by_op.values())), "by_op_type": dict(sorted(by_op.items())),
            "input_shapes": used, "nodes_with_unknown_shape": unknown}


def count_parameters(model: onnx.ModelProto) -> dict[str, Any]:
    """Elements and bytes of initializers and Constant-node tensors, per dtype."""
    by_dtype: dict[str, dict[str, int]] = {}
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    for t in tensors:
        name = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name if t.data_type else "undefined"
        count = _prod(t.dims)
        nbytes = tensor_nbytes(t)
        entry = by_dtype.setdefault(name, {"count": 0, "bytes": 0})
        entry["count"] += count
        entry["bytes"] += nbytes
    return {"total": sum(e["count"] for e in by_dtype.values()), "bytes": sum(e["bytes"] for e in by_dtype.values()),
            "by_dtype": dict(sorted(by_dtype.items()))}


