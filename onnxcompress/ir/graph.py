"""Conversion between onnx.ModelProto and onnx_graphsurgeon.Graph that keeps the model's identity.

gs.export_onnx would stamp the newest IR version and drop model metadata; ``to_model`` restores them from the
model the graph came from so that the result loads in the same runtimes as the input.
"""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs


def to_graph(model: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(model)


def to_model(graph: gs.Graph, like: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """Export ``graph``; copy IR version, producer, metadata and opset imports from ``like``."""
    model = gs.export_onnx(graph, do_type_check=False)
    if like is None:
        return model
    model.ir_version = like.ir_version
    model.producer_name = like.producer_name
    model.producer_version = like.producer_version
    model.domain = like.domain
    model.model_version = like.model_version
    model.doc_string = like.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(like.metadata_props)
    versions = {imp.domain: imp.version for imp in like.opset_import}
    versions.update({imp.domain: imp.version for imp in model.opset_import})  # the graph's own (converted) opsets win
    del model.opset_import[:]
    for domain, version in sorted(versions.items()):
        model.opset_import.append(onnx.helper.make_opsetid(domain, version))
    model.ir_version = max(like.ir_version, _min_ir_version(model))
    return model


def _min_ir_version(model: onnx.ModelProto) -> int:
    """The oldest IR version that can carry the model's opset imports (onnx's own table)."""
    try:
        return int(onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))
    except (TypeError, ValueError):
        return 3
