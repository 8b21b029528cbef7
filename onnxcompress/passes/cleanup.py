"""Shape inference and cleanup passes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ir.edit import replace_all_uses
from onnxcompress.ir.graph import to_model
from onnxcompress.ir.shapes import infer_shapes
from onnxcompress.ir.subgraphs import all_graphs, all_tensors
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
    """Run onnx shape inference and write the inferred dtypes/shapes onto the graph's tensors (in place), inside
    If/Loop/Scan subgraphs too."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        inferred = infer_shapes(to_model(graph))
        known: dict[str, tuple] = {}
        for g in _graph_protos(inferred.graph):
            for vi in list(g.value_info) + list(g.output):
                tt = vi.type.tensor_type
                if vi.type.HasField("tensor_type") and tt.elem_type and vi.name not in known:
                    shape = None
                    if tt.HasField("shape"):
                        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
                    known[vi.name] = (onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), shape)
        changed = 0
        for name, tensor in all_tensors(graph).items():
            if isinstance(tensor, gs.Constant) or name not in known:
                continue
            dtype, shape = known[name]
            if tensor.dtype is None or (tensor.shape is None and shape is not None) or _differs(tensor.shape, shape):
                changed += 1
            tensor.dtype = np.dtype(dtype)
            if shape is not None:
                tensor.shape = shape
        return PassResult(graph, changed > 0, {"tensors_updated": changed})


def _graph_protos(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """``graph`` and every subgraph in its nodes' attributes."""
    out, stack = [], [graph]
    while stack:
        g = stack.pop(0)
        out.append(g)
        for node in g.node:
            for a in node.attribute:
                stack += [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
    return out


def _differs(old, new) -> bool:
    if old is None or new is None:
        return False
    return list(old) != list(new)


#: Constant-node attributes -> numpy dtype of the value they hold
_CONSTANT_ATTRS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}


class LiftConstantsPass(Pass):
    """Turn Constant nodes into initializers so weight-aware passes see every weight (exporters such as Paddle2ONNX
    store all weights as Constant nodes). A Constant whose output is a graph output stays, with a recorded reason."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        lifted = sum(self._lift(g, ctx) for g in all_graphs(graph))  # subgraphs too: If/Loop bodies hold weights
        if lifted:
            graph.cleanup(remove_unused_node_outputs=False).toposort()
        return PassResult(graph, lifted > 0, {"lifted": lifted})

    def _lift(self, graph: gs.Graph, ctx: PassContext) -> int:
        lifted = 0
        outputs = {o.name for o in graph.outputs}
        for node in [n for n in graph.nodes if n.op == "Constant"]:
            values = _constant_node_value(node)
            out = node.outputs[0]
            if values is None or out.name in outputs:
                why = "graph output" if values is not None else f"unsupported attribute {sorted(node.attrs)}"
                ctx.decide(self.name, node.name or out.name, "kept", why)
                continue
            replace_all_uses(out, gs.Constant(out.name, np.asarray(values)))
            node.outputs.clear()
            lifted += 1
        return lifted


def _constant_node_value(node: gs.Node):
    value = node.attrs.get("value")
    if isinstance(value, gs.Constant):
        return value.values
    for key, dtype in _CONSTANT_ATTRS.items():
        if key in node.attrs:
            return np.asarray(node.attrs[key], dtype=dtype)
    return None
