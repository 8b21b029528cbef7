"""Read-only questions about a gs.Graph: constants, producers, consumers."""

from __future__ import annotations

import onnx_graphsurgeon as gs


def constant_value(tensor: gs.Tensor):
    """The numpy value of a gs.Constant (or a Constant node's output); None for a variable."""
    if isinstance(tensor, gs.Constant):
        return tensor.values
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant":
        attr = tensor.inputs[0].attrs.get("value")
        if isinstance(attr, gs.Constant):
            return attr.values
    return None


def is_graph_output(graph: gs.Graph, tensor: gs.Tensor) -> bool:
    return any(o is tensor or o.name == tensor.name for o in graph.outputs)


def single_consumer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.outputs[0] if len(tensor.outputs) == 1 else None


def unique_name(base: str, taken, sep: str = "_") -> str:
    """``base``, or ``base{sep}1``, ``base{sep}2``, ... : the first that is not in ``taken``."""
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}{sep}{i}"
    return name


def initializer_map(model) -> dict:
    """name -> TensorProto of an onnx.ModelProto's initializers (the protos themselves, for in-place edits)."""
    return {t.name: t for t in model.graph.initializer}
