"""Which nodes compute in fp16/bf16 and which stay float32, with the reason for every node kept float32.

Decided in graph order from the op rules (ops.precision_rules), the calibration statistics (precision.stats) and
the config: a tensor that overflows the format (max |x| x headroom), loses too much to underflow or is already
non-finite keeps its producer and every consumer in float32 (underflow is measured as the share of the tensor's
energy in values that round to zero, or, for tensors read by Log/Reciprocal/a Div denominator/a Pow base, as the
share of its nonzero values); so does an initializer of that kind for its
consumers. Reductions are checked for their size and their accumulator bound (elements x max|x|, x max|x|^2 for
sums of squares, compared with the format's largest value: it is already a worst case, so no headroom), dot
products for their length. Data-movement nodes take the precision of their float inputs, so they never add a
Cast (one that moves only constant float data, e.g. an embedding lookup, takes the low precision). Nodes next to
Q/DQ or dynamic-quantization nodes stay float32 (onnxruntime fuses those patterns into int8 kernels only with
float32 around them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ir.query import node_matches
from onnxcompress.ops.precision_rules import PrecisionRule, rule_for
from onnxcompress.precision.config import FloatFormat, PrecisionConfig
from onnxcompress.precision.stats import GraphStats, TensorStat

log = logging.getLogger(__name__)

QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                       "QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat"})


@dataclass
class PrecisionPlan:
    """``low``: nodes computing in the target format; ``kept``: node -> why it stays float32 (only nodes with
    float tensors); ``blocked``: tensor/initializer -> why it must stay float32; ``rules``: the rule of every
    node that has one (the conversion reads the fixed-float32 slots from it)."""

    to: str
    low: set[str] = field(default_factory=set)
    kept: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    rules: dict[str, PrecisionRule] = field(default_factory=dict)
    low_inputs: set[str] = field(default_factory=set)  # graph inputs converted (keep_io_types = false)


#: ops for which a value rounding to zero changes the result qualitatively (log 0, 1/0): any count matters
SINGULAR_AT_ZERO = {("Log", 0), ("Reciprocal", 0), ("Div", 1), ("Pow", 0)}


def value_reason(absmax: float, flushed: float, nonfinite: int, fmt: FloatFormat, config: PrecisionConfig, *,
                 what: str = "of its energy is in values that", headroom: float | None = None) -> str | None:
    """Why values with these statistics cannot be held in ``fmt`` (None if they can)."""
    headroom = config.headroom if headroom is None else headroom
    if nonfinite:
        return f"{nonfinite} non-finite values already in float32"
    if absmax * headroom > fmt.max:
        extra = f" x headroom {headroom:g}" if headroom != 1 else ""
        return f"max |x| = {absmax:.4g}{extra} > {fmt.name} max {fmt.max:.6g}"
    if flushed > config.max_underflow:
        return f"{100 * flushed:.2f}% {what} round to 0 in {fmt.name} (> max_underflow {100 * config.max_underflow:g}%)"
    return None


def _singular_consumer(t: gs.Tensor) -> bool:
    return any((c.op, i) in SINGULAR_AT_ZERO for c in t.outputs for i, x in enumerate(c.inputs) if x is t)


def _stat_reason(t: gs.Tensor | None, st: TensorStat, fmt: FloatFormat, config: PrecisionConfig) -> str | None:
    if t is not None and _singular_consumer(t):  # log/1/x of a flushed value: count every one of them
        return value_reason(st.absmax, st.flushed_fraction, st.nonfinite, fmt, config,
                            what="of its nonzero values (read by Log/Reciprocal/Div/Pow)")
    return value_reason(st.absmax, st.flushed_energy_fraction, st.nonfinite, fmt, config)


def constant_reason(values: np.ndarray, fmt: FloatFormat, config: PrecisionConfig) -> str | None:
    """An initializer: its largest value (no headroom: a constant never grows), and the energy fraction of its
    values that round to zero."""
    a = np.abs(values.astype(np.float64))
    finite = np.isfinite(a)
    aa = np.where(finite, a, 0.0)
    energy = float((aa * aa).sum())
    tiny = (aa > 0) & (aa < fmt.flush)
    flushed = float((aa[tiny] ** 2).sum()) / energy if energy > 0 else 0.0
    return value_reason(float(aa.max()) if aa.size else 0.0, flushed, int(a.size - finite.sum()), fmt, config,
                        headroom=1.0)


def _float_tensors(node: gs.Node, stats: GraphStats) -> list[gs.Tensor]:
    out = []
    for t in list(node.inputs) + list(node.outputs):
        if isinstance(t, gs.Constant):
            if t.values.dtype == np.float32:
                out.append(t)
        elif t.name and stats.is_float32(t.name):
            out.append(t)
    return out


def _quantized_neighbour(node: gs.Node) -> bool:
    reads = [t.inputs[0] for t in node.inputs if isinstance(t, gs.Variable) and t.inputs]
    if any(p.op in QUANT_OPS for p in reads):
        return True
    if node.op in ("Cast", "Mul") and any(p.op in ("Cast", "MatMulInteger", "DynamicQuantizeLinear") and
                                          any(pp.op in QUANT_OPS for t in p.inputs if isinstance(t, gs.Variable)
                                              for pp in t.inputs) for p in reads):
        return True  # the Cast -> Mul tail of a dynamic MatMulInteger chain
    return any(c.op in ("QuantizeLinear", "DynamicQuantizeLinear") for t in node.outputs for c in t.outputs)


def _reduction_reason(node: gs.Node, rule: PrecisionRule, stats: GraphStats, config: PrecisionConfig) -> str | None:
    fmt = config.format
    n = rule.reduced(node, stats.shapes()) if rule.reduced is not None else None
    if n is None:
        return None
    if rule.kind == "dot":
        return f"dot product over {n} terms > max_dot_length {config.max_dot_length}" if n > config.max_dot_length else None
    if n > config.max_reduction:
        return f"reduces over {n} elements > max_reduction {config.max_reduction}"
    st = stats.stats.get(node.inputs[0].name) if node.inputs else None
    if st is None or rule.accumulate is None:
        return None
    term, what = {"sum": (st.absmax, "max|x|"), "sumsq": (st.absmax ** 2, "max|x|^2"), "exp": (1.0, "exp <= 1")}[
        rule.accumulate]
    bound = n * term
    if bound > fmt.max:
        return f"accumulator bound {n} x {what} ({term:.4g}) = {bound:.4g} > {fmt.name} max {fmt.max:.6g}"
    return None


def _blocked(graph: gs.Graph, stats: GraphStats, config: PrecisionConfig) -> dict[str, str]:
    fmt = config.format
    out: dict[str, str] = {}
    tensors = graph.tensors()
    for name, st in stats.stats.items():
        reason = _stat_reason(tensors.get(name), st, fmt, config)
        if reason is not None:
            out[name] = reason
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant) and t.values.dtype == np.float32 and t.values.size:
            reason = constant_reason(t.values, fmt, config)
            if reason is not None:
                out[t.name] = "initializer: " + reason
    return out


def _node_reason(node: gs.Node, rule: PrecisionRule | None, floats: list[gs.Tensor], blocked: dict[str, str],
                 stats: GraphStats, config: PrecisionConfig) -> str | None:
    if rule is None:
        domain = f"{node.domain}." if node.domain not in (None, "", "ai.onnx") else ""
        return f"no {config.to} rule for {domain}{node.op}"
    hit = next((p for p in config.keep_fp32 if node_matches(p, node.name, node.op)), None)
    if hit is not None:
        return f"kept float32 by keep_fp32 '{hit}'"
    if _quantized_neighbour(node):
        return "next to a quantized (Q/DQ or dynamic) node: float32 keeps onnxruntime's int8 fusion"
    bad = next((t for t in floats if t.name in blocked), None)
    if bad is not None:
        return f"tensor '{bad.name}': {blocked[bad.name]}"
    if rule.kind in ("reduction", "dot"):
        return _reduction_reason(node, rule, stats, config)
    return None


def plan_precision(graph: gs.Graph, stats: GraphStats, config: PrecisionConfig) -> PrecisionPlan:
    """Assign every node with float32 tensors to the target format or float32 (graph is topologically sorted)."""
    plan = PrecisionPlan(config.to)
    plan.blocked = _blocked(graph, stats, config)
    if not config.keep_io_types:
        plan.low_inputs = {t.name for t in graph.inputs if stats.is_float32(t.name) and t.name not in plan.blocked}
    low_tensors = set(plan.low_inputs)
    for node in graph.nodes:
        floats = _float_tensors(node, stats)
        if not floats:
            continue
        rule = rule_for(node, graph.opset)
        if rule is not None:
            plan.rules[node.name] = rule
        if rule is not None and rule.kind == "any":
            continue
        reason = _node_reason(node, rule, floats, plan.blocked, stats, config)
        names = {t.name for t in floats}
        if reason is None and rule is not None and rule.kind == "follow":
            acts = [t for t in node.inputs if isinstance(t, gs.Variable) and t.name in names]
            if any(t.name not in low_tensors for t in acts):  # only constant float data (an embedding table): low
                reason = "data movement between float32 tensors (follows its input)"
        if reason is None and rule is not None and rule.kind == "cast" and node.attrs.get("to") != onnx.TensorProto.FLOAT:
            continue  # a Cast to another type reads either float type as it is
        if reason is not None:
            plan.kept[node.name] = reason
            continue
        plan.low.add(node.name)
        low_tensors.update(t.name for i, t in enumerate(node.outputs) if t.name in names and i not in rule.fp32_outputs)
    log.info("%s plan: %d nodes low precision, %d kept float32", config.to, len(plan.low), len(plan.kept))
    return plan

