"""Static model analysis behind ``onnxcompress inspect``: signature, op histogram, parameters and MACs.

The JSON form is versioned (``INSPECT_SCHEMA``) and documented in docs/inspect-schema.md.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress.ir.io import file_size, load_model, opset_of
from onnxcompress.ir.shapes import infer_shapes, value_shapes, with_input_shapes

INSPECT_SCHEMA = "onnxcompress.inspect/1"

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
}


def count_macs(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """MACs per op type for concrete input shapes (dynamic dims default to 1)."""
    shaped = infer_shapes(with_input_shapes(model, input_shapes or {}))
    shapes = value_shapes(shaped)
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
        nbytes = len(t.raw_data) if t.HasField("raw_data") else onnx.numpy_helper.to_array(t).nbytes
        entry = by_dtype.setdefault(name, {"count": 0, "bytes": 0})
        entry["count"] += count
        entry["bytes"] += nbytes
    return {"total": sum(e["count"] for e in by_dtype.values()), "bytes": sum(e["bytes"] for e in by_dtype.values()),
            "by_dtype": dict(sorted(by_dtype.items()))}


def _value_infos(values, skip: set[str]) -> list[dict[str, Any]]:
    out = []
    for vi in values:
        if vi.name in skip:
            continue
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else None
        shape = None
        if tt.HasField("shape"):
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        out.append({"name": vi.name, "dtype": dtype, "shape": shape})
    return out


def inspect_model(model: str | os.PathLike | onnx.ModelProto,
                  input_shapes: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Everything ``onnxcompress inspect`` prints, as a JSON-ready dict (schema ``INSPECT_SCHEMA``)."""
    path = None
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        model = load_model(path)
    inits = {t.name for t in model.graph.initializer}
    info: dict[str, Any] = {
        "schema": INSPECT_SCHEMA,
        "model": _model_info(model, path),
        "inputs": _value_infos(model.graph.input, inits),
        "outputs": _value_infos(model.graph.output, set()),
        "nodes": len(model.graph.node),
        "op_histogram": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
        "parameters": count_parameters(model),
        "macs": count_macs(model, input_shapes),
    }
    info["prune_groups"] = _prune_groups(model, input_shapes)
    from onnxcompress.quantize.api import quantizable_summary

    info["quantizable"] = quantizable_summary(model)  # which nodes `onnxcompress quantize` would touch
    return info


def _prune_groups(model: onnx.ModelProto, input_shapes) -> dict[str, Any]:
    """Prunable and blocked channel groups (onnxcompress.prune); an analysis failure is reported, not raised."""
    from onnxcompress.errors import OnnxCompressError
    from onnxcompress.prune import analyze_groups

    try:
        return analyze_groups(model, input_shapes)
    except (OnnxCompressError, ValueError, KeyError, IndexError) as e:  # deliberate skip point, reason recorded
        return {"summary": f"channel analysis failed: {e}", "groups": [], "blocked": [], "error": str(e)}


def _model_info(model: onnx.ModelProto, path: Path | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "path": str(path) if path else None,
        "ir_version": model.ir_version,
        "opset": opset_of(model),
        "opset_imports": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
        "producer": model.producer_name,
        "producer_version": model.producer_version,
    }
    if path is not None:
        size, ext = file_size(path)
        info.update(file_bytes=size, external_data_bytes=ext, total_bytes=size + ext)
    else:
        size = model.ByteSize()
        info.update(file_bytes=size, external_data_bytes=0, total_bytes=size)
    return info


def dtype_name(dtype: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dtype)).name
