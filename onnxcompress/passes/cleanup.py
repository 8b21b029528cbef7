"""Shape inference and cleanup passes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ir.graph import to_model
from onnxcompress.ir.shapes import infer_shapes
from onnxcompress.passes.base import Pass, PassContext, PassResult


def _signature(graph: gs.Graph) -> tuple:
    consts = sorted(name for name, t in graph.tensors().items() if isinstance(t, gs.Constant))
    return tuple(n.name or id(n) for n in graph.nodes), tuple(consts)


class CleanupPass(Pass):
    """Remove dead nodes and unused initializers, then sort topologically."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        nodes_before = len(graph.nodes)
        consts_before = sum(isinstance(t, gs.Constant) for t in graph.tensors().values())
        before = _signature(graph)
        graph.cleanup(remove_unused_node_outputs=False).toposort()
        consts_after = sum(isinstance(t, gs.Constant) for t in graph.tensors().values())
        stats = {"removed_nodes": nodes_before - len(graph.nodes), "removed_initializers": consts_before - consts_after}
        return PassResult(graph, before != _signature(graph), stats)


class InferShapesPass(Pass):
    """Run onnx shape inference and write the inferred dtypes/shapes onto the graph's tensors (in place)."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        inferred = infer_shapes(to_model(graph))
        known = {}
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            tt = vi.type.tensor_type
            if vi.type.HasField("tensor_type") and tt.elem_type:
                shape = None
                if tt.HasField("shape"):
                    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
                known[vi.name] = (onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), shape)
        changed = 0
        for name, tensor in graph.tensors().items():
            if isinstance(tensor, gs.Constant) or name not in known:
                continue
            dtype, shape = known[name]
            if tensor.dtype is None or (tensor.shape is None and shape is not None) or _differs(tensor.shape, shape):
                changed += 1
            tensor.dtype = np.dtype(dtype)
            if shape is not None:
                tensor.shape = shape
        return PassResult(graph, changed > 0, {"tensors_updated": changed})


def _differs(old, new) -> bool:
    if old is None or new is None:
        return False
    return list(old) != list(new)
