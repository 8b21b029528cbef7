"""Planning: walk the graph once (topological order), apply the op rules and the selection, and decide which
activation tensors get a Q/DQ pair, which tensors share one scale (pass-through, Concat), which Relu/Clip are
absorbed, and which nodes stay float (with the reason)."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_graphsurgeon as gs

from onnxcompress.errors import RecipeError
from onnxcompress.ir.query import is_constant, is_graph_output
from onnxcompress.ir.subgraphs import nodes_with_graphs
from onnxcompress.ops.quant_rules import WEIGHTED_OPS, TensorQuantSpec, absorbable, rule_for, specs_for, why_not
from onnxcompress.quantization.config import QuantizeConfig, matches
from onnxcompress.unionfind import UnionFind

#: rule kinds that produce an int8 kernel in ORT (the denominator of coverage)
KERNEL_KINDS = ("compute", "binary", "unary", "concat")
#: ops that never compute on activations: not worth a "kept float" record
UNRECORDED = frozenset({"Constant", "ConstantOfShape", "Shape", "Size", "Range"})


class Groups(UnionFind):
    """Union-find over tensor names: tensors in one group share one scale/zero point."""


@dataclass
class Plan:
    """Everything the pass materializes, plus the decisions for the report."""

    specs: list[TensorQuantSpec] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # quantized node -> rule kind
    ops: dict[str, str] = field(default_factory=dict)  # quantized node -> op type
    activations: list[str] = field(default_factory=list)  # tensors that get Q -> DQ, in graph order
    calibrated: list[str] = field(default_factory=list)  # tensors whose range is measured
    groups: Groups = field(default_factory=Groups)
    absorbed: dict[str, str] = field(default_factory=dict)  # Relu/Clip node -> producer node
    output_of: dict[str, str] = field(default_factory=dict)  # quantized output tensor -> node that owns it
    skipped: dict[str, str] = field(default_factory=dict)  # node -> reason
    quantizable: dict[str, str] = field(default_factory=dict)  # node -> op, every node with a kernel-kind rule
    weighted: set[str] = field(default_factory=set)  # Conv/Gemm/MatMul nodes whose weight is a constant
    float_outputs: dict[str, str] = field(default_factory=dict)  # node -> output left float (no consumer is int8)
    fixed_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # output -> the op's own range
    lowered: set[str] = field(default_factory=set)  # nodes quantization.lower turns into int8 arithmetic
    range_reasons: dict[str, str] = field(default_factory=dict)  # node -> why its calibrated ranges keep it float

    def add_activation(self, name: str, calibrate: bool = True) -> None:
        if name not in self.groups.parent:
            self.activations.append(name)
            self.groups.add(name)
        if calibrate and name not in self.calibrated:
            self.calibrated.append(name)

    def drop_activation(self, name: str) -> None:
        """An output un-marked (a Relu/Clip absorbs it, or no consumer is int8); only ever a singleton group."""
        self.activations.remove(name)
        if name in self.calibrated:
            self.calibrated.remove(name)
        del self.groups.parent[name]
        self.output_of.pop(name, None)
        self.fixed_ranges.pop(name, None)


def selected(node: gs.Node, config: QuantizeConfig, first_last: tuple[set[str], set[str]]) -> str | None:
    """Why the selection leaves ``node`` float (None if it is selected)."""
    if config.include and not any(matches(p, node.name, node.op) for p in config.include):
        return "not matched by include"
    hit = next((p for p in config.exclude if matches(p, node.name, node.op)), None)
    if hit is not None:
        return f"excluded by '{hit}'"
    if node.name in config.float_nodes:
        return "kept float by the placement (float_nodes)"
    first, last = first_last
    if config.layer_policy in ("skip_first", "skip_first_last") and node.name in first:
        return "first weighted layer (layer_policy)"
    if config.layer_policy in ("skip_last", "skip_first_last") and node.name in last:
        return "last weighted layer (layer_policy)"
    return None


def _first_last(graph: gs.Graph) -> tuple[set[str], set[str]]:
    weighted = [n.name for n in graph.nodes if n.op in WEIGHTED_OPS]
    return ({weighted[0]} if weighted else set()), ({weighted[-1]} if weighted else set())


def plan_graph(graph: gs.Graph, config: QuantizeConfig) -> Plan:
    """Decide, node by node in topological order (each subgraph after the graph that holds it), what gets
    quantized. Nodes inside If/Loop/Scan subgraphs follow the same rules as top-level ones."""
    plan = Plan()
    _check_selection(graph, config)
    first_last = _first_last(graph)
    opset = graph.opset
    for node, home in nodes_with_graphs(graph):
        rule = rule_for(node, opset)
        if node.op in WEIGHTED_OPS and len(node.inputs) > 1 and is_constant(node.inputs[1]):
            plan.weighted.add(node.name)
        reason = why_not(node, rule, config.resolved_target.provider)
        if reason is None and rule.kind in KERNEL_KINDS:
            plan.quantizable[node.name] = node.op  # eligible for an int8 kernel (the coverage denominator)
        if reason is None:
            reason = selected(node, config, first_last)
        if reason is None:
            reason = _apply(home, node, rule, plan, config)
        if reason is not None and node.op not in UNRECORDED:
            plan.skipped[node.name] = reason
    drop_float_only_outputs(graph, plan)
    return plan


def _check_selection(graph: gs.Graph, config: QuantizeConfig) -> None:
    """An include/exclude entry that matches no node is almost always a typo: say so instead of quietly
    quantizing nothing (include) or everything (exclude); so is a float_nodes name the graph does not have."""
    nodes = [n for n, _ in nodes_with_graphs(graph)]
    unknown = sorted(set(config.float_nodes) - {n.name for n in nodes})
    if unknown:
        raise RecipeError(f"float_nodes {unknown[:5]} are not node names of the model",
                          hint="float_nodes holds exact node names as the report's placement section lists them")
    for key in ("include", "exclude"):
        dead = [p for p in getattr(config, key) if not any(matches(p, n.name, n.op) for n in nodes)]
        if dead:
            ops = sorted({n.op for n in nodes})
            raise RecipeError(f"{key} entries {dead} match no node of the model",
                              hint=f"use a node name (see `onnxcompress inspect --json`), an op type such as "
                              f"{ops[:6]}, or re:<regex on node names>")


#: compute ops that onnxruntime runs in int8 with a float output (QGemm, MatMulIntegerToFloat: DQ -> op, no Q)
FLOAT_OUTPUT_OPS = ("MatMul", "Gemm")


def _gemm_fusable(node: gs.Node) -> bool:
    """A 2-D MatMul followed by an Add: onnxruntime's MatMulAddFusion would turn it into a float Gemm (its bias is
    not quantized) before the QDQ fusions run, so that MatMul keeps its output Q/DQ and runs as QLinearMatMul."""
    x = node.inputs[0]
    rank = len(x.shape) if x.shape is not None else None
    return node.op == "MatMul" and rank in (None, 2) and any(c.op == "Add" for c in node.outputs[0].outputs)


def drop_float_only_outputs(graph: gs.Graph, plan: Plan) -> None:
    """Un-mark the output Q/DQ of a weighted MatMul/Gemm whose consumers all stay float (e.g. a transformer's bias
    Add): the pair would only round the value and cost a Q and a DQ; without it onnxruntime fuses the node into
    MatMulIntegerToFloat / QGemm with a float output (and folds the following bias Add into it)."""
    consumed = {s.tensor for s in plan.specs if s.role == "activation"}
    members = plan.groups.members()
    nodes = {n.name: n for n, _ in nodes_with_graphs(graph)}
    for tensor, owner in list(plan.output_of.items()):
        node = nodes.get(owner)
        if node is None or node.op not in FLOAT_OUTPUT_OPS or owner not in plan.weighted:
            continue
        if tensor != node.outputs[0].name or tensor in consumed or len(members.get(tensor, [])) != 1:
            continue
        if _gemm_fusable(node):
            continue
        plan.drop_activation(tensor)
        plan.float_outputs[owner] = tensor


def _apply(graph: gs.Graph, node: gs.Node, rule, plan: Plan, config: QuantizeConfig) -> str | None:
    if rule.kind == "absorb":
        return _absorb(graph, node, plan)
    if rule.kind == "passthrough":
        return _passthrough(graph, node, plan)
    specs = specs_for(node, rule, config.per_channel)
    for s in specs:
        if s.role == "activation":
            plan.add_activation(s.tensor)
    plan.specs.extend(specs)
    out = node.outputs[0]
    skip_output = rule.kind == "compute" and node.op in ("Gemm", "MatMul") and is_graph_output(graph, out)
    if not skip_output:  # Gemm/MatMul feeding a graph output run as QGemm / MatMulIntegerToFloat with float output
        plan.add_activation(out.name, calibrate=rule.output_range is None)
        plan.output_of[out.name] = node.name
        if rule.output_range is not None:
            plan.fixed_ranges[out.name] = rule.output_range
    if rule.lowered:
        plan.lowered.add(node.name)
    if rule.kind == "concat":
        for s in specs:
            plan.groups.union(s.tensor, out.name)
    plan.nodes[node.name] = rule.kind
    plan.ops[node.name] = node.op
    return None


def _absorb(graph: gs.Graph, node: gs.Node, plan: Plan) -> str | None:
    x = node.inputs[0]
    producer = x.inputs[0] if x.inputs else None
    if not absorbable(node):
        return "Clip whose lower bound is not a constant >= 0"
    if producer is None or plan.nodes.get(producer.name) not in ("compute", "binary"):
        return "its producer is not quantized (nothing to absorb it into)"
    if len(x.outputs) != 1 or is_graph_output(graph, x) or plan.output_of.get(x.name) != producer.name:
        return f"{producer.name}'s output has other consumers"
    plan.drop_activation(x.name)
    out = node.outputs[0]
    plan.add_activation(out.name)
    plan.output_of[out.name] = producer.name
    plan.absorbed[node.name] = producer.name
    return None


def _passthrough(graph: gs.Graph, node: gs.Node, plan: Plan) -> str | None:
    x = node.inputs[0]
    if x.name not in plan.groups.parent:
        return "its input is not quantized (nothing to pass the scale through)"
    if x.dtype is not None and x.dtype.kind != "f":
        return "input is not floating point"
    for out in node.outputs:
        plan.add_activation(out.name, calibrate=False)
        plan.groups.union(x.name, out.name)
    plan.specs.append(TensorQuantSpec(node.name, 0, x.name, "activation"))
    plan.nodes[node.name] = "passthrough"
    plan.ops[node.name] = node.op
    return None
