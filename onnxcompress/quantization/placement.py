"""Latency-aware placement: which quantizable nodes run faster in INT8, and which stay float, on the target.

Given the full INT8 plan, every node with an int8 kernel (compute, binary, unary, concat kinds) is a 0/1 choice
(float / int8). The estimated run time of a choice is, with the costs of a :class:`~.costs.CostModel`:

- each node's float or int8 kernel time (an int8 Conv whose activation onnxruntime would fuse into the float
  Conv, e.g. hard-swish, also pays for that activation as a kernel of its own);
- each activation tensor's QuantizeLinear when its producer is float and a consumer int8, and its
  DequantizeLinear when its producer is int8 and a consumer float (data movement ops such as Reshape, MaxPool,
  Transpose, Pad and absorbed Relu/Clip are transparent: they stay in the domain of their input; an int8
  MatMul/Gemm can write a float output, so its DequantizeLinear is free);
- a layout change (Transpose + NCHWc Reorder) wherever a float and an int8 convolution (or pool) meet through
  layout-agnostic ops: onnxruntime runs float convolutions blocked (NCHWc) and int8 ones in NHWC.

That is a binary labelling with pairwise (and "any consumer") terms that are submodular, so the fastest choice
is one minimum s-t cut (:mod:`.mincut`): exact and deterministic. The result is compared with the all-float
estimate: a plan that is not at least ``min_gain`` faster keeps every node float ("no faster plan").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import onnx_graphsurgeon as gs

from onnxcompress.ir.query import is_graph_output
from onnxcompress.ir.subgraphs import nodes_with_graphs
from onnxcompress.ops.cost_rules import (
    CONV_FUSED_ACTIVATIONS,
    DEQUANTIZE,
    FLOAT,
    INT8,
    LAYOUT_AGNOSTIC,
    LAYOUT_OPS,
    QUANTIZE,
    REORDER,
    TRANSPOSE,
    Work,
    cost_key,
    graph_int8_kernels,
    graph_work,
)
from onnxcompress.quantization.costs import CostModel
from onnxcompress.quantization.mincut import INF, MinCut
from onnxcompress.quantization.plan import KERNEL_KINDS, Plan

log = logging.getLogger(__name__)

#: int8 kernels that can write a float output (no DequantizeLinear after them)
FLOAT_OUTPUT_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class NodeCost:
    """Estimated microseconds of one quantizable node in float and in int8 (its own kernel only)."""

    node: str
    op: str
    key: str | None
    float_us: float
    int8_us: float
    int8: bool  # the placement's choice

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "class": self.key, "float_us": round(self.float_us, 2),
                "int8_us": round(self.int8_us, 2), "int8": self.int8}


@dataclass(frozen=True)
class Placement:
    """The placement's decision and the estimates behind it (microseconds at ``batch``)."""

    cost_model: str
    source: str
    batch: int
    float_nodes: tuple[str, ...]  # quantizable nodes the placement keeps float
    estimated_float_us: float  # the model with every quantizable node float
    estimated_plan_us: float  # with the chosen placement
    estimated_int8_us: float  # with every quantizable node int8 (the full plan)
    faster: bool  # the chosen plan is at least min_gain faster than float
    nodes: tuple[NodeCost, ...] = ()
    unknown: tuple[str, ...] = ()  # nodes whose cost could not be estimated (kept as the full plan has them)
    measured: dict[str, Any] | None = None  # measure mode: host, factors, A/B timings

    @property
    def estimated_speedup(self) -> float:
        return self.estimated_float_us / self.estimated_plan_us if self.estimated_plan_us > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cost_model": self.cost_model, "source": self.source, "batch": self.batch,
            "float_nodes": list(self.float_nodes), "faster": self.faster,
            "estimated_ms": {"float": round(self.estimated_float_us / 1e3, 3), "plan": round(self.estimated_plan_us / 1e3, 3),
                             "full_int8": round(self.estimated_int8_us / 1e3, 3)},
            "estimated_speedup": round(self.estimated_speedup, 3),
            "nodes": [n.to_dict() for n in self.nodes], "unknown_cost": list(self.unknown)}
        if self.measured is not None:
            out["measured"] = self.measured
        return out


# --- the problem --------------------------------------------------------------------------------------------------
@dataclass
class Boundary:
    """One activation tensor as the placement sees it: who produces it, who reads it, how big it is."""

    tensor: str
    producer: str | None  # a quantizable node, or None (graph input or a node that stays float)
    consumers: list[str] = field(default_factory=list)  # quantizable nodes reading it in int8 when they are int8
    float_reader: bool = False  # a node that is always float, or a graph output, reads it
    elements: float = 0.0
    float_output_ok: bool = False  # the producer's int8 kernel can write float (no DequantizeLinear)


@dataclass(frozen=True)
class LayoutSwitch:
    """A layout change paid when ``source`` and ``reader`` (layout ops, see ops.cost_rules.LAYOUT_OPS) differ in
    precision; ``source`` None is a layout op that always stays float."""

    source: str | None
    reader: str
    elements: float


@dataclass
class Problem:
    costs: dict[str, NodeCost]
    boundaries: list[Boundary]
    unknown: list[str]
    layout: list[LayoutSwitch] = field(default_factory=list)
    pairs: list[tuple[str, str, float]] = field(default_factory=list)  # (a, b, us): paid when a int8 and b float


def _transparent(plan: Plan) -> set[str]:
    """Nodes that stay in their input's domain: pass-through (data movement) and absorbed Relu/Clip."""
    return {n for n, k in plan.nodes.items() if k == "passthrough"} | set(plan.absorbed)


def _readers(t: gs.Tensor, transparent: set[str], graph: gs.Graph, seen: set[str]) -> tuple[list[gs.Node], bool]:
    """The non-transparent nodes reading ``t`` directly or through transparent nodes, and whether a graph output
    is among the tensors reached."""
    out: list[gs.Node] = []
    graph_out = is_graph_output(graph, t)
    for c in t.outputs:
        if c.name in seen:
            continue
        if c.name in transparent:
            seen.add(c.name)
            for o in c.outputs:
                more, g = _readers(o, transparent, graph, seen)
                out += more
                graph_out |= g
        else:
            out.append(c)
    return out, graph_out


def _node_cost(node: gs.Node, shapes: dict, model: CostModel, batch: int, opset: int | None, candidates: set[str]
               ) -> tuple[str | None, float, float] | None:
    measured = graph_work(node, shapes, opset)
    if measured is None:
        return None
    cls, w = measured
    fkey, qkey = cost_key(cls, FLOAT), cost_key(cls, INT8)
    f = _us(model, fkey, w, batch)
    lowered = graph_int8_kernels(node, shapes, opset)
    q = _us(model, qkey, w, batch) if lowered is None else sum(_us(model, cost_key(c, INT8), lw, batch)
                                                                 for c, lw in lowered)
    if f is None or q is None:
        return None
    for act in _fused_activations(node):
        if act.name not in candidates:  # a candidate activation pays for itself (build_problem's pairs)
            q += _fused_us(act, shapes, model, batch, opset)
    return cls, f, q


def _fused_us(act: gs.Node, shapes: dict, model: CostModel, batch: int, opset: int | None) -> float:
    """What an activation fused into a float Conv costs as a float kernel of its own (after an int8 Conv)."""
    measured = graph_work(act, shapes, opset)
    return 0.0 if measured is None else _us(model, cost_key(measured[0], FLOAT), measured[1], batch) or 0.0


def _us(model: CostModel, key: str, work: Work, batch: int) -> float | None:
    if not model.has(key):
        return None
    return model.us(key, Work(work.macs * batch, work.elements * batch))


def _fused_activations(node: gs.Node) -> list[gs.Node]:
    """The activation nodes onnxruntime fuses into this float Conv: its only reader when that is an activation
    MLAS applies in the Conv kernel, or the hard-swish ``Mul(y, HardSigmoid(y))`` of its output ``y``."""
    if node.op != "Conv":
        return []
    y = node.outputs[0]
    readers = list(y.outputs)
    if len(readers) == 1 and readers[0].op in CONV_FUSED_ACTIVATIONS:
        return readers
    if len(readers) == 2:
        hs = next((r for r in readers if r.op == "HardSigmoid"), None)
        mul = next((r for r in readers if r.op == "Mul"), None)
        if hs is not None and mul is not None and _hard_swish_gate(hs) and len(hs.outputs[0].outputs) == 1 \
                and hs.outputs[0].outputs[0] is mul and {t.name for t in mul.inputs} == {y.name, hs.outputs[0].name}:
            return [hs, mul]
    return []


def _hard_swish_gate(hs: gs.Node) -> bool:
    """Is this HardSigmoid hard-swish's (alpha 1/6, beta 1/2)? onnxruntime fuses ``y * HardSigmoid(y)`` into a float
    Conv only then; with other parameters the HardSigmoid and the Mul stay kernels of their own."""
    alpha, beta = float(hs.attrs.get("alpha", 0.2)), float(hs.attrs.get("beta", 0.5))
    return abs(alpha - 1.0 / 6.0) <= 1e-6 and beta == 0.5


def _fusing_conv(node: gs.Node) -> gs.Node | None:
    """The float Conv ``node`` (an activation) would be fused into, if any."""
    for x in node.inputs:
        conv = x.inputs[0] if x.inputs else None
        if conv is not None and any(a is node for a in _fused_activations(conv)):
            return conv
    return None


def build_problem(graph: gs.Graph, plan: Plan, shapes: dict, model: CostModel, batch: int) -> Problem:
    """The placement problem of ``plan`` on ``graph`` (shapes of one sample, costs scaled to ``batch``).

    A candidate activation onnxruntime would fuse into its float Conv is free when float after a float Conv;
    after an int8 Conv, a float one is a kernel of its own: a pairwise cost (Conv int8, activation float)."""
    nodes = {n.name: n for n, _ in nodes_with_graphs(graph)}
    candidates = [n for n, k in plan.nodes.items() if k in KERNEL_KINDS]
    cset = set(candidates)
    costs: dict[str, NodeCost] = {}
    unknown = []
    pairs: list[tuple[str, str, float]] = []
    for name in candidates:
        node = nodes[name]
        c = _node_cost(node, shapes, model, batch, graph.opset, cset)
        if c is None:
            unknown.append(name)
            costs[name] = NodeCost(name, node.op, None, 0.0, 0.0, True)
            continue
        conv = _fusing_conv(node)
        float_us = c[1]
        if conv is not None:
            if conv.name in cset:
                pairs.append((conv.name, name, float_us))
            float_us = 0.0
        costs[name] = NodeCost(name, node.op, c[0], float_us, c[2], True)
    layout = _layout_switches(graph, cset, shapes, batch)
    return Problem(costs, _boundaries(graph, plan, shapes, batch, cset), unknown, layout, pairs)


def _layout_switches(graph: gs.Graph, candidates: set[str], shapes: dict, batch: int) -> list[LayoutSwitch]:
    """For every layout op that could be int8: the layout ops upstream of each of its inputs, found by walking
    back through layout-agnostic ops (elementwise, activations, MaxPool, Pad)."""
    out = []
    for node, _ in nodes_with_graphs(graph):
        if node.op not in LAYOUT_OPS or node.name not in candidates:
            continue
        x = node.inputs[0]
        shape = shapes.get(x.name)
        if not shape or len(shape) != 4:
            continue
        elements = float(_elements(shape)) * batch
        for source in _layout_sources(x, set()):
            if source.name != node.name:
                out.append(LayoutSwitch(source.name if source.name in candidates else None, node.name, elements))
    return out


def _layout_sources(t: gs.Tensor, seen: set[str]) -> list[gs.Node]:
    """The layout ops whose output reaches ``t`` through layout-agnostic ops only."""
    if not t.inputs or t.name in seen:
        return []
    seen.add(t.name)
    producer = t.inputs[0]
    if producer.op in LAYOUT_OPS:
        return [producer]
    if producer.op not in LAYOUT_AGNOSTIC:
        return []
    found: list[gs.Node] = []
    for inp in producer.inputs:
        if not isinstance(inp, gs.Constant):
            found += _layout_sources(inp, seen)
    return found


def _boundaries(graph: gs.Graph, plan: Plan, shapes: dict, batch: int, candidates: set[str]) -> list[Boundary]:
    tensors = graph.tensors()
    transparent = _transparent(plan)
    producers = {o.name: n for n, _ in nodes_with_graphs(graph) for o in n.outputs}
    reads = {(s.node, s.tensor) for s in plan.specs if s.role == "activation"}
    out = []
    for name in plan.activations:
        producer = producers.get(name)
        if producer is not None and producer.name in transparent and producer.name not in plan.absorbed:
            continue  # a pass-through output: part of its input's boundary
        t = tensors.get(name)
        if t is None:
            continue
        owner = plan.output_of.get(name)
        b = Boundary(name, owner if owner in candidates else None)
        readers, graph_out = _readers(t, transparent, graph, set())
        b.float_reader = graph_out
        for r in readers:
            if r.name in candidates and any((r.name, x.name) in reads for x in r.inputs):
                b.consumers.append(r.name)
            else:
                b.float_reader = True
        shape = shapes.get(name)
        b.elements = float(_elements(shape)) * batch if shape else 0.0
        node = producers.get(name)
        b.float_output_ok = b.producer is not None and node is not None and node.op in FLOAT_OUTPUT_OPS
        if b.consumers or b.producer is not None:
            out.append(b)
    return out


def _elements(shape) -> int:
    n = 1
    for d in shape:
        if not isinstance(d, int) or d <= 0:
            return 0
        n *= d
    return n


# --- solving ------------------------------------------------------------------------------------------------------
def _layout_us(model: CostModel, elements: float) -> float:
    """One layout change (a Transpose on one side, a Reorder on the other)."""
    return _qdq(model, TRANSPOSE, elements) + _qdq(model, REORDER, elements)


def _qdq(model: CostModel, key: str, elements: float) -> float:
    return model.us(key, Work(0.0, elements)) if model.has(key) and elements > 0 else 0.0


def solve(problem: Problem, model: CostModel, int8: set[str] | frozenset[str] = frozenset(),
          floats: set[str] | frozenset[str] = frozenset()) -> tuple[set[str], float]:
    """The set of nodes to run in int8 that minimizes the estimated time (nodes of ``int8`` / ``floats`` forced to
    that precision), and its cut value."""
    cut = MinCut()
    ids = {name: cut.node() for name in problem.costs}
    for name, c in problem.costs.items():
        cut.add(cut.source, ids[name], INF if name in int8 else c.float_us)
        cut.add(ids[name], cut.sink, INF if name in floats and name not in int8 else c.int8_us)
    for b in problem.boundaries:
        q, d = _qdq(model, QUANTIZE, b.elements), _qdq(model, DEQUANTIZE, b.elements)
        p = ids.get(b.producer) if b.producer is not None else None
        readers = [ids[c] for c in dict.fromkeys(b.consumers)]
        if readers and q > 0:  # Q when the producer is float and any reader int8
            y = cut.node()
            for r in readers:
                cut.add(r, y, INF)
            cut.add(y, cut.sink if p is None else p, q)
        if p is not None and d > 0 and not b.float_output_ok:  # DQ when the producer is int8 and any reader float
            if b.float_reader:
                cut.add(p, cut.sink, d)
            elif readers:
                z = cut.node()
                for r in readers:
                    cut.add(z, r, INF)
                cut.add(p, z, d)
    for sw in problem.layout:
        lay = _layout_us(model, sw.elements)
        if sw.source is None:
            cut.add(ids[sw.reader], cut.sink, lay)
        else:
            cut.add(ids[sw.source], ids[sw.reader], lay)
            cut.add(ids[sw.reader], ids[sw.source], lay)
    for a, b, us in problem.pairs:
        cut.add(ids[a], ids[b], us)
    value = cut.solve()
    side = cut.source_side()
    return {name for name, i in ids.items() if i in side}, value


def estimate(problem: Problem, model: CostModel, int8: set[str]) -> float:
    """Estimated microseconds (variable part) of running exactly ``int8`` in int8."""
    total = sum(c.int8_us if n in int8 else c.float_us for n, c in problem.costs.items())
    for b in problem.boundaries:
        any_int8 = any(c in int8 for c in b.consumers)
        any_float = b.float_reader or any(c not in int8 for c in b.consumers)
        p_int8 = b.producer is not None and b.producer in int8
        if any_int8 and not p_int8:
            total += _qdq(model, QUANTIZE, b.elements)
        if p_int8 and any_float and not b.float_output_ok:
            total += _qdq(model, DEQUANTIZE, b.elements)
    for sw in problem.layout:
        if (sw.source is not None and sw.source in int8) != (sw.reader in int8):
            total += _layout_us(model, sw.elements)
    total += sum(us for a, b, us in problem.pairs if a in int8 and b not in int8)
    return total


#: rule kinds whose float node onnxruntime fuses back into its int8 kernel when the node reads only
#: DequantizeLinear outputs and feeds only QuantizeLinear nodes (a weighted layer kept float has a float weight)
REFUSED_KINDS = ("binary", "unary", "concat")


def refused(problem: Problem, plan: Plan, int8: set[str]) -> set[str]:
    """Nodes chosen float that would run int8 anyway: every input comes from an int8 node and every reader is
    int8, so onnxruntime fuses DQ -> node -> Q into the int8 kernel (QLinearSoftmax, QLinearAdd, ...)."""
    inputs: dict[str, list[Boundary]] = {}
    outputs: dict[str, list[Boundary]] = {}
    for b in problem.boundaries:
        for c in b.consumers:
            inputs.setdefault(c, []).append(b)
        if b.producer is not None:
            outputs.setdefault(b.producer, []).append(b)
    out = set()
    for name in problem.costs:
        if name in int8 or name in plan.lowered or not (_act_by_act(plan, name)
                                                        or plan.nodes.get(name) in REFUSED_KINDS):
            continue  # a lowered node kept float stays float: onnxruntime has no int8 kernel to fuse it into
        ins, outs = inputs.get(name, []), outputs.get(name, [])
        if ins and outs and all(b.producer is not None and b.producer in int8 for b in ins) and all(
                not b.float_reader and b.consumers and all(c in int8 for c in b.consumers) for b in outs):
            out.add(name)
    return out


def _settle(problem: Problem, plan: Plan, model: CostModel) -> set[str]:
    """The min-cut choice, repaired until no float node would be fused back into int8: for such a node, the
    cheapest (by estimate) of forcing it int8, forcing its int8 readers float or forcing its int8 producers float
    (each repair only adds constraints, so this ends)."""
    forced_int8: set[str] = set()
    forced_float: set[str] = set()
    chosen, _ = solve(problem, model)
    for _ in range(2 * len(problem.costs) + 1):
        bad = sorted(refused(problem, plan, chosen))
        if not bad:
            return chosen
        n = bad[0]
        readers = {c for b in problem.boundaries if b.producer == n for c in b.consumers} & chosen
        producers = {b.producer for b in problem.boundaries if n in b.consumers and b.producer is not None} & chosen
        options = [(forced_int8 | {n}, forced_float), (forced_int8, forced_float | readers - forced_int8),
                   (forced_int8, forced_float | producers - forced_int8)]
        best = None
        for i8, fl in options:
            if fl == forced_float and i8 == forced_int8:
                continue
            sol, _ = solve(problem, model, i8, fl)
            t = estimate(problem, model, sol)
            if best is None or t < best[0]:
                best = (t, sol, i8, fl)
        assert best is not None
        _, chosen, forced_int8, forced_float = best
    return chosen


def _act_by_act(plan: Plan, name: str) -> bool:
    """A MatMul of two activations (attention): no float weight stops onnxruntime's QLinearMatMul fusion."""
    return plan.ops.get(name) == "MatMul" and name not in plan.weighted


def place(graph: gs.Graph, plan: Plan, shapes: dict, model: CostModel, batch: int, *, min_gain: float,
          fixed_us: float = 0.0) -> Placement:
    """The fastest placement of ``plan`` under ``model``; every node float when no placement gains ``min_gain``.
    A node onnxruntime would fuse back into int8 (:func:`refused`) is forced int8 and the cut solved again."""
    problem = build_problem(graph, plan, shapes, model, batch)
    chosen = _settle(problem, plan, model)
    chosen |= set(problem.unknown)  # no estimate: left as the full plan has it
    all_int8 = set(problem.costs)
    t_float = estimate(problem, model, set()) + fixed_us
    t_plan = estimate(problem, model, chosen) + fixed_us
    t_int8 = estimate(problem, model, all_int8) + fixed_us
    faster = bool(chosen) and t_plan * (1.0 + min_gain) <= t_float
    if not faster:
        chosen = set()
        t_plan = t_float
    nodes = tuple(NodeCost(c.node, c.op, c.key, c.float_us, c.int8_us, c.node in chosen)
                  for c in problem.costs.values())
    return Placement(model.name, model.source, batch, tuple(n for n in problem.costs if n not in chosen),
                     t_float, t_plan, t_int8, faster, nodes, tuple(problem.unknown))


def fixed_float_us(graph: gs.Graph, plan: Plan, shapes: dict, model: CostModel, batch: int) -> float:
    """Estimated microseconds of the nodes the placement does not decide (always float), for the totals; an
    activation onnxruntime fuses into a Conv is counted with the Conv."""
    candidates = {n for n, k in plan.nodes.items() if k in KERNEL_KINDS}
    fused = {act.name for n, _ in nodes_with_graphs(graph) for act in _fused_activations(n)}
    total = 0.0
    for node, _ in nodes_with_graphs(graph):
        if node.name in candidates or node.name in fused:
            continue
        measured = graph_work(node, shapes, graph.opset)
        if measured is None or not model.has(cost_key(measured[0], FLOAT)):
            continue
        w = measured[1]
        total += model.us(cost_key(measured[0], FLOAT), Work(w.macs * batch, w.elements * batch))
    return total
