"""Control flow: walking the subgraphs of If/Loop/Scan nodes, and exposing tensors computed inside them.

onnx-graphsurgeon keeps a subgraph as a ``gs.Graph`` in its node's attributes and links tensors of the outer scope
by identity, so a consumer list spans scopes. ``Graph.tensors()`` and ``Graph.nodes`` do not recurse; the helpers
here do. :func:`expose` threads a tensor computed inside a subgraph out to the top-level graph so a calibration
session can read it: as an extra output of an If branch (the other branch yields an empty tensor of the same type,
so only the samples that take the branch contribute) or as an extra scan output of a Loop/Scan body (values of
every iteration, stacked).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.ir.edit import Names

CONTROL_FLOW = ("If", "Loop", "Scan")


def subgraphs_of(node: gs.Node) -> list[tuple[str, gs.Graph]]:
    out = []
    for key, value in node.attrs.items():
        for sub in value if isinstance(value, list) else [value]:
            if isinstance(sub, gs.Graph):
                out.append((key, sub))
    return out


def all_graphs(graph: gs.Graph) -> list[gs.Graph]:
    """``graph`` and every nested subgraph, outer before inner."""
    out, stack = [], [graph]
    while stack:
        g = stack.pop(0)
        out.append(g)
        for node in g.nodes:
            stack += [sub for _, sub in subgraphs_of(node)]
    return out


def nodes_with_graphs(graph: gs.Graph) -> Iterator[tuple[gs.Node, gs.Graph]]:
    """Every node of ``graph`` and its subgraphs, with the graph it belongs to."""
    for g in all_graphs(graph):
        for node in g.nodes:
            yield node, g


def all_tensors(graph: gs.Graph) -> dict[str, gs.Tensor]:
    """Every tensor by name, subgraphs included (an outer tensor seen in a subgraph is the same object)."""
    out: dict[str, gs.Tensor] = {}
    for g in all_graphs(graph):
        for name, t in g.tensors().items():
            out.setdefault(name, t)
    return out


def defining_graph(graph: gs.Graph) -> dict[str, gs.Graph]:
    """Tensor name -> the graph where it is defined: the graph of its producer, or whose input it is."""
    out: dict[str, gs.Graph] = {}
    for g in all_graphs(graph):
        for t in g.inputs:
            out.setdefault(t.name, g)
        for node in g.nodes:
            for t in node.outputs:
                out.setdefault(t.name, g)
    return out


def has_subgraphs(graph: gs.Graph) -> bool:
    return any(subgraphs_of(n) for n in graph.nodes)


@dataclass(frozen=True)
class Step:
    """One level of nesting: ``node`` (If/Loop/Scan) in ``outer`` holds ``inner`` under attribute ``attr``."""

    outer: gs.Graph
    node: gs.Node
    attr: str
    inner: gs.Graph


def nesting(graph: gs.Graph) -> dict[int, list[Step]]:
    """id(subgraph) -> the chain of steps from ``graph`` down to it."""
    chains: dict[int, list[Step]] = {id(graph): []}
    for g in all_graphs(graph):
        for node in g.nodes:
            for attr, sub in subgraphs_of(node):
                chains[id(sub)] = chains[id(g)] + [Step(g, node, attr, sub)]
    return chains


def expose(graph: gs.Graph, tensor: gs.Tensor, home: gs.Graph, names: Names,
           chains: dict[int, list[Step]]) -> gs.Variable | None:
    """Make ``tensor`` (defined in ``home``) readable as a top-level output; returns the top-level tensor whose values
    stack what the subgraphs produced, or None when a node on the way cannot carry it out."""
    current: gs.Tensor = tensor
    for step in reversed(chains[id(home)]):
        lifted = _lift(step, current, names)
        if lifted is None:
            return None
        current = lifted
    if not any(o is current for o in graph.outputs):
        graph.outputs.append(current)
    return current if isinstance(current, gs.Variable) else None


def _lift(step: Step, t: gs.Tensor, names: Names) -> gs.Variable | None:
    node = step.node
    if node.op not in ("If", "Loop", "Scan"):
        return None
    if any(o is t for o in step.inner.outputs):  # already an output of the body: expose a copy (no duplicates)
        copy = gs.Variable(names.tensor(t.name + "_copy"), dtype=t.dtype, shape=t.shape)
        step.inner.nodes.append(gs.Node("Identity", names.node(t.name + "_expose"), inputs=[t], outputs=[copy]))
        t = copy
    out = gs.Variable(names.tensor(t.name + "_exposed"), dtype=t.dtype)
    if node.op == "If":
        other = "else_branch" if step.attr == "then_branch" else "then_branch"
        empty = gs.Constant(names.tensor(t.name + "_none"), np.zeros(0, dtype=np.dtype(t.dtype or np.float32)))
        step.inner.outputs.append(t)
        node.attrs[other].outputs.append(empty)
        node.outputs.append(out)
        return out
    if node.op in ("Loop", "Scan"):
        step.inner.outputs.append(t)  # a scan output: the value of every iteration, stacked
        node.outputs.append(out)
        if node.op == "Scan" and "scan_output_axes" in node.attrs:
            node.attrs["scan_output_axes"] = list(node.attrs["scan_output_axes"]) + [0]
        if node.op == "Scan" and "scan_output_directions" in node.attrs:
            node.attrs["scan_output_directions"] = list(node.attrs["scan_output_directions"]) + [0]
        return out
    return None
