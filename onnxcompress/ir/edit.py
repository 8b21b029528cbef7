"""Graph edits every pass shares: fresh names, replace-all-uses, detach, expose intermediate outputs.

Every tensor or node a pass inserts gets its name from :class:`Names` (or :func:`fresh_name`), so an inserted
``x_scale`` never captures a tensor the model already has under that name.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ir.graph import to_graph, to_model


def fresh_name(base: str, taken: Iterable[str] | set[str] | dict, sep: str = "_") -> str:
    """``base``, or ``base{sep}1``, ``base{sep}2``, ... : the first that is not in ``taken``."""
    taken = taken if isinstance(taken, (set, dict, frozenset)) else set(taken)
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}{sep}{i}"
    return name


def _all_names(graph: gs.Graph, tensors: set[str], nodes: set[str]) -> None:
    for node in graph.nodes:
        if node.name:
            nodes.add(node.name)
        for t in list(node.inputs) + list(node.outputs):
            if t.name:
                tensors.add(t.name)
        for value in node.attrs.values():
            for sub in value if isinstance(value, list) else [value]:
                if isinstance(sub, gs.Graph):
                    _all_names(sub, tensors, nodes)
    tensors.update(t.name for t in list(graph.inputs) + list(graph.outputs) if t.name)


class Names:
    """The tensor and node names in use in a graph (subgraphs included); ``tensor(base)`` / ``node(base)``
    return a name that is free and reserve it, so a pass can insert many tensors in one sweep."""

    def __init__(self, graph: gs.Graph | None = None):
        self.tensors: set[str] = set()
        self.nodes: set[str] = set()
        if graph is not None:
            _all_names(graph, self.tensors, self.nodes)

    def tensor(self, base: str, sep: str = "_") -> str:
        name = fresh_name(base, self.tensors, sep)
        self.tensors.add(name)
        return name

    def node(self, base: str, sep: str = "_") -> str:
        name = fresh_name(base, self.nodes, sep)
        self.nodes.add(name)
        return name


def replace_all_uses(old: gs.Tensor, new: gs.Tensor) -> int:
    """Every consumer of ``old`` reads ``new`` instead; returns the number of inputs rewired."""
    count = 0
    for consumer in list(old.outputs):
        for i, t in enumerate(consumer.inputs):
            if t is old:
                consumer.inputs[i] = new
                count += 1
    return count


def detach(node: gs.Node) -> None:
    """Disconnect a dead node completely: graph.cleanup formats every node it removes (eagerly, into a log line),
    and a node that still holds constant inputs or a Constant's value attribute prints whole arrays."""
    node.outputs.clear()
    node.inputs.clear()
    node.attrs.clear()


def expose_outputs(model: onnx.ModelProto, names: Iterable[str], *, keep_existing: bool = True) -> onnx.ModelProto:
    """A copy of ``model`` whose graph also outputs the intermediate tensors ``names``.

    The added outputs carry only their name: onnxruntime takes type and shape from the producing node, so no
    shape inference runs (that matters on large models, where a probe model is built per layer). With
    ``keep_existing=False`` the graph outputs only ``names`` and the nodes they do not need are removed, so a run
    computes just the prefix of the graph that produces them."""

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if not keep_existing:
        del copy.graph.output[:]
    present = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in dict.fromkeys(names) if n not in present)
    if not keep_existing:
        graph = to_graph(copy)
        graph.cleanup(remove_unused_graph_inputs=False)
        copy = to_model(graph, like=copy)
    return copy


def extract(model: onnx.ModelProto | gs.Graph, inputs: dict[str, np.dtype], outputs: Iterable[str]
            ) -> onnx.ModelProto:
    """The part of ``model`` that computes ``outputs`` from the intermediate tensors ``inputs`` (name -> dtype),
    which become graph inputs, and from whichever original graph inputs it still needs (the others are dropped).
    A producer of a new input keeps its other outputs (its own output slot gets a fresh, unused name). A gs graph
    is cut on a copy (weights shared, not copied) and left as it is."""

    like = model if isinstance(model, onnx.ModelProto) else None
    graph = to_graph(model) if isinstance(model, onnx.ModelProto) else model.copy()
    tensors = graph.tensors()
    names = Names(graph)
    cut = []
    for name, dtype in inputs.items():
        t = tensors[name]
        for node in list(t.inputs):
            node.outputs[node.outputs.index(t)] = gs.Variable(names.tensor(name + "_cut", sep=""))
        t.dtype, t.shape = dtype, None
        cut.append(t)
    graph.inputs = cut + [t for t in graph.inputs if t.name not in inputs]
    graph.outputs = [tensors[n] for n in dict.fromkeys(outputs)]
    graph.cleanup(remove_unused_graph_inputs=True)
    return to_model(graph, like=like)


def name_nodes(graph: gs.Graph) -> int:
    """Give unnamed (or duplicate-named) nodes a unique, deterministic name (decisions are keyed by node name).
    Subgraph nodes are named too, unique across every scope (their top-level names are unchanged)."""
    from onnxcompress.ir.subgraphs import all_graphs

    seen: set[str] = set()
    renamed = 0
    for depth, g in enumerate(all_graphs(graph)):
        for i, node in enumerate(g.nodes):
            if not node.name or node.name in seen:
                base = f"{node.op}_{i}" if depth == 0 else f"{node.op}_sub{depth}_{i}"
                node.name = fresh_name(base, seen) if base in seen else base
                renamed += 1
            seen.add(node.name)
    return renamed
