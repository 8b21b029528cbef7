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
    versions.update({imp.domain: imp.version for imp in model.opset_import if imp.domain not in versions})
    del model.opset_import[:]
    for domain, version in sorted(versions.items()):
        model.opset_import.append(onnx.helper.make_opsetid(domain, version))
    return model


def with_outputs(model: onnx.ModelProto, names: list[str], *, keep_existing: bool = True) -> onnx.ModelProto:
    """A copy of ``model`` whose graph also outputs the intermediate tensors ``names`` (types from inference).

    With ``keep_existing=False`` the graph outputs only ``names`` and the nodes they do not need are removed, so
    a run computes just the prefix of the graph that produces them."""
    from onnxcompress.ir.shapes import infer_shapes

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if not keep_existing:
        del copy.graph.output[:]
    present = {o.name for o in copy.graph.output}
    wanted = [n for n in dict.fromkeys(names) if n not in present]
    if not wanted:
        return copy
    typed = {vi.name: vi for vi in infer_shapes(copy).graph.value_info}
    typed.update({vi.name: vi for vi in copy.graph.input})
    for name in wanted:
        vi = typed.get(name)
        elem = vi.type.tensor_type.elem_type if vi is not None else onnx.TensorProto.FLOAT
        copy.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    if not keep_existing:
        graph = to_graph(copy)
        graph.cleanup(remove_unused_graph_inputs=False)
        copy = to_model(graph, like=copy)
    return copy
