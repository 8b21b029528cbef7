"""Static model analysis behind ``onnxcompress inspect``: signature, op histogram, parameters, MACs, prunable
channel groups and the nodes the quantizer would touch.

The JSON form is versioned (``INSPECT_SCHEMA``) and documented in docs/inspect-schema.md.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress.errors import OnnxCompressError
from onnxcompress.ir.cost import count_macs, count_parameters
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.ir.io import file_size, load_model, opset_of
from onnxcompress.ir.outputs import model_bytes
from onnxcompress.ops.formats import weight_formats
from onnxcompress.passes.base import PassContext
from onnxcompress.passes.preprocess import preprocess_passes
from onnxcompress.pruning import analyze_groups
from onnxcompress.quantization import quantizable_summary

INSPECT_SCHEMA = "onnxcompress.inspect/1"


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
    """Everything ``onnxcompress inspect`` prints, as a JSON-ready dict (schema ``INSPECT_SCHEMA``). The signature,
    op histogram, parameters and MACs describe the model as given; the prunable groups and the quantizable nodes
    describe it after the standard pre-processing, which is what `prune` and `quantize` work on."""
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
        "weights_by_format": weight_formats(model),
        "macs": count_macs(model, input_shapes),
    }
    prepared = preprocess_passes()(to_graph(model), PassContext()).graph
    info["prune_groups"] = _prune_groups(to_model(prepared, like=model), input_shapes)
    info["quantizable"] = quantizable_summary(prepared)  # which nodes `onnxcompress quantize` would touch
    return info


def _prune_groups(model: onnx.ModelProto, input_shapes) -> dict[str, Any]:
    """Prunable and blocked channel groups (onnxcompress.pruning); an analysis failure is reported, not raised."""
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
        size = model_bytes(model)
        info.update(file_bytes=size, external_data_bytes=0, total_bytes=size)
    return info


def dtype_name(dtype: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dtype)).name
