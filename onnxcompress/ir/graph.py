"""Conversion between onnx.ModelProto and onnx_graphsurgeon.Graph that keeps the model's identity.

gs.export_onnx would stamp the newest IR version and drop model metadata; ``to_model`` restores them from the
model the graph came from so that the result loads in the same runtimes as the input.
"""

from __future__ import annotations

import logging
import re

import ml_dtypes
import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues

from onnxcompress.ir.external import adopt

#: sub-byte element types: onnx packs two per byte, onnx-graphsurgeon would write one byte per element
SUB_BYTE_DTYPES = frozenset({np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4)})


def to_graph(model: onnx.ModelProto) -> gs.Graph:
    """Import ``model``; tensors it left on disk are read from their files when first used (ir/external.py)."""
    graph = gs.import_onnx(model)
    adopt(graph)
    return graph


def pack_sub_byte_constants(graph: gs.Graph) -> int:
    """Constants holding int4/uint4 numpy arrays are handed to the exporter as onnx tensors (packed two per byte,
    as onnx.numpy_helper writes them); onnx-graphsurgeon's own export would write one byte per element."""
    count = 0
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant) and isinstance(t._values, np.ndarray) and t._values.dtype in SUB_BYTE_DTYPES:
            t.values = LazyValues(onnx.numpy_helper.from_array(np.asarray(t._values), t.name))
            count += 1
    return count


def to_model(graph: gs.Graph, like: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """Export ``graph``; copy IR version, producer, metadata and opset imports from ``like``."""
    pack_sub_byte_constants(graph)
    model = gs.export_onnx(graph, do_type_check=False)
    _hoist_shared_initializers(model)
    if like is None:
        _infer_lost_io_types(model)
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
    _restore_io_types(model, like)
    return model


def _subgraph_protos(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    out = []
    for node in graph.node:
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                out.append(sub)
                out += _subgraph_protos(sub)
    return out


def _hoist_shared_initializers(model: onnx.ModelProto) -> None:
    """onnx-graphsurgeon writes a constant into every subgraph that uses it: an outer-scope weight read by both
    branches of an If is stored twice. Identical copies in several subgraphs move to the main graph (visible to every
    subgraph), so the model does not grow."""
    subs = _subgraph_protos(model.graph)
    if not subs:
        return
    seen: dict[str, list[tuple[onnx.GraphProto, onnx.TensorProto]]] = {}
    for sub in subs:
        for t in sub.initializer:
            seen.setdefault(t.name, []).append((sub, t))
    top = {t.name for t in model.graph.initializer}
    shared = [name for name, copies in seen.items() if (len(copies) > 1 or name in top)
              and len({t.SerializeToString() for _, t in copies}) == 1]
    for name in shared:
        copies = seen[name]
        if name not in top:
            model.graph.initializer.append(copies[0][1])
        for sub, _ in copies:
            keep = [x for x in sub.initializer if x.name != name]
            del sub.initializer[:]
            sub.initializer.extend(keep)


def _restore_io_types(model: onnx.ModelProto, like: onnx.ModelProto) -> None:
    """onnx-graphsurgeon knows tensors only: a graph input or output of a sequence/map/optional type (ZipMap's
    seq(map) of a scikit-learn classifier) comes back untyped. Give those their type from ``like``."""
    types = {vi.name: vi.type for vi in list(like.graph.input) + list(like.graph.output)}
    for vi in list(model.graph.input) + list(model.graph.output):
        old = types.get(vi.name)
        if old is None or _lost_type(old):
            continue
        shape_lost = (vi.type.HasField("tensor_type") and old.HasField("tensor_type") and not vi.type.tensor_type.HasField(
            "shape") and old.tensor_type.HasField("shape") and vi.type.tensor_type.elem_type == old.tensor_type.elem_type)
        if _lost_type(vi.type) or shape_lost:
            vi.type.CopyFrom(old)
    _infer_lost_io_types(model)


def _lost(vi: onnx.ValueInfoProto) -> bool:
    return _lost_type(vi.type)


def _infer_lost_io_types(model: onnx.ModelProto) -> None:
    """Graph outputs still untyped (no ``like`` to copy from) get the type onnx's inference gives them."""
    if not any(_lost(vi) for vi in model.graph.output):
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for vi in probe.graph.output:
        if _lost(vi):
            vi.ClearField("type")  # inference keeps a declared type: let it infer this one
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
    except Exception:  # deliberate: inference is best effort here; the untyped output stays as it was
        return
    types = {vi.name: vi.type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for vi in model.graph.output:
        if _lost(vi) and vi.name in types and not _lost_type(types[vi.name]):
            vi.type.CopyFrom(types[vi.name])


def _lost_type(t: onnx.TypeProto) -> bool:
    """A type with an undefined element somewhere (gs writes seq(map(...)) as seq(tensor(undefined)))."""
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        return t.tensor_type.elem_type == 0
    if kind == "sequence_type":
        return _lost_type(t.sequence_type.elem_type)
    if kind == "map_type":
        return _lost_type(t.map_type.value_type)
    if kind == "optional_type":
        return _lost_type(t.optional_type.elem_type)
    return kind is None


def _min_ir_version(model: onnx.ModelProto) -> int:
    """The oldest IR version that can carry the model's opset imports (onnx's own table)."""
    try:
        return int(onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))
    except (TypeError, ValueError):
        return 3


class _GraphSurgeonToLogging:
    """Stands in for onnx-graphsurgeon's ``G_LOGGER.log``, which prints to stdout (where ``--json`` output goes):
    its messages go to the ``onnx_graphsurgeon`` logger instead, with control characters escaped."""

    def __init__(self, logger):
        self.logger = logger
        self.target = logging.getLogger("onnx_graphsurgeon")

    def __call__(self, message, severity, mode=None, stack_depth=2) -> None:
        if severity < self.logger.severity:
            return
        text = message() if callable(message) else str(message)
        self.target.log(max(severity, logging.DEBUG), "%s", _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def route_graphsurgeon_logging() -> None:
    """Send onnx-graphsurgeon's log lines to Python logging (stderr), never to stdout (idempotent)."""
    logger = gs.logger.G_LOGGER
    if not isinstance(logger.__dict__.get("log"), _GraphSurgeonToLogging):
        logger.log = _GraphSurgeonToLogging(logger)
