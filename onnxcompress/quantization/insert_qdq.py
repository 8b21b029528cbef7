"""QuantizeQDQPass: the one pass that calibrates the current graph and inserts QuantizeLinear/DequantizeLinear.

Activations: ``T -> QuantizeLinear -> DequantizeLinear -> (every consumer of T)``; weights: int8 initializer +
DequantizeLinear (per-channel along the rule's axis); bias: int32 at ``s_in * s_w`` with zero point 0 (weight scales
grow where the bias would saturate int32). Tensors of one group (pass-through, Concat) share one scale. Every
inserted tensor and node gets a fresh name (:class:`onnxcompress.ir.edit.Names`): an existing ``x_scale`` is
never captured.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import DataError, EmptyDataError, InputMismatchError, NonFiniteDataError, UserError
from onnxcompress.ir.edit import Names, expose_outputs, name_nodes
from onnxcompress.ir.external import release
from onnxcompress.ir.graph import to_model
from onnxcompress.ir.query import constant_bytes, constant_value
from onnxcompress.ir.subgraphs import all_tensors, defining_graph, expose, nesting, nodes_with_graphs
from onnxcompress.ops.facts import quantized_ops
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.passes.progress import ProgressTask, track
from onnxcompress.quantization import latency
from onnxcompress.quantization import params as P
from onnxcompress.quantization.calibrate import Collector, compute_range, sanity_warnings
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.lower import lower_hard_activations
from onnxcompress.quantization.placement import Placement
from onnxcompress.quantization.plan import Plan, plan_graph
from onnxcompress.runtime.session import SessionOptions, batch_for_budget, make_session, release_memory

log = logging.getLogger(__name__)
MS_DOMAIN = "com.microsoft"


@dataclass
class Materialized:
    """Names created for one activation tensor."""

    quantized: str  # output of QuantizeLinear
    dequantized: str  # output of DequantizeLinear


@dataclass(frozen=True)
class QuantizationPlan:
    """What QuantizeQDQPass planned, measured and inserted (for the report and the kernel verification)."""

    plan: Plan
    ranges: dict[str, tuple[float, float]]
    qparams: dict[str, P.QParams]
    float_model: onnx.ModelProto | None = None  # the graph before Q/DQ, kept when bias correction follows
    bytes_before: int = 0  # constant-tensor bytes before quantization


class QuantizeQDQPass(Pass):
    """Plan (rules + selection), calibrate (streaming), compute parameters and insert Q/DQ.

    Needs ``ctx.calibration`` (an InputData). Leaves a :class:`QuantizationPlan` in the context."""

    def __init__(self, config: QuantizeConfig | None = None):
        self.config = config if config is not None else QuantizeConfig()

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if ctx.calibration is None:
            raise EmptyDataError("static quantization needs calibration data", hint="pass --calib DATA")
        found = quantized_ops(graph)
        if found:
            raise UserError(f"the model is already quantized (it has {', '.join(found)})",
                            hint="quantize the float model it was made from")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        graph.toposort()
        name_nodes(graph)
        bytes_before = constant_bytes(graph)
        plan, ranges, config = plan_and_calibrate(graph, self.config, ctx)
        plan, ranges = self._place(graph, plan, ranges, config, ctx)
        for node, reason in plan.skipped.items():
            ctx.decide(self.name, node, "kept float", reason)
        qparams = group_params(plan, ranges, self.config)
        float_model = _snapshot(graph) if self.config.bias_correction else None
        stats = materialize(graph, plan, qparams, self.config)
        graph.cleanup(remove_unused_node_outputs=False).toposort()
        ctx.put(QuantizationPlan(plan, ranges, qparams, float_model, bytes_before))
        stats.update(quantized_nodes=len(plan.nodes), skipped_nodes=len(plan.skipped),
                     activations=len(plan.activations), calibrated=len(plan.calibrated))
        return PassResult(graph, bool(plan.nodes), stats)

    def _place(self, graph: gs.Graph, plan: Plan, ranges: dict[str, tuple[float, float]], config: QuantizeConfig,
               ctx: PassContext) -> tuple[Plan, dict[str, tuple[float, float]]]:
        """Latency-aware placement (quantization.latency): the nodes INT8 does not pay for stay float."""
        ctx.discard(Placement)

        def build(variant: QuantizeConfig) -> tuple[onnx.ModelProto, Plan]:
            copy = graph.copy()
            vplan, vranges, _ = plan_and_calibrate(copy, variant, ctx, ranges)
            materialize(copy, vplan, group_params(vplan, vranges, variant), variant)
            copy.cleanup(remove_unused_node_outputs=False).toposort()
            return to_model(copy), vplan

        placement = latency.decide(graph, plan, config, ctx, build)
        if placement is None:
            return plan, ranges
        ctx.put(placement)
        if not placement.float_nodes:
            return plan, ranges
        placed = replace(config, float_nodes=config.float_nodes + placement.float_nodes)
        plan, ranges, _ = plan_and_calibrate(graph, placed, ctx, ranges, plan.range_reasons)
        costs = {n.node: n for n in placement.nodes}
        why = (f"INT8 does not pay here ({placement.cost_model}, batch {placement.batch})" if placement.faster else
               f"no placement is faster than float ({placement.cost_model}, batch {placement.batch})")
        for name in placement.float_nodes:
            c = costs.get(name)
            detail = "" if c is None else f": est. {c.int8_us:.0f} us int8 vs {c.float_us:.0f} us float + Q/DQ"
            plan.skipped[name] = why + detail
        return plan, ranges


#: a calibrated range this large is a sentinel (an attention mask's -FLT_MAX), not a value any 8/16-bit grid holds
SENTINEL = 1e30


def plan_and_calibrate(graph: gs.Graph, config: QuantizeConfig, ctx: PassContext,
                       known: dict[str, tuple[float, float]] | None = None, known_reasons: dict[str, str] | None = None
                       ) -> tuple[Plan, dict[str, tuple[float, float]], QuantizeConfig]:
    """Plan and calibrate (only the tensors ``known`` lacks). Nodes whose tensors the calibration data never
    computed (an If branch no sample takes), whose range holds a sentinel (|x| >= 1e30) or, for a Concat, whose
    inputs' ranges are too far apart (:func:`mixed_concats`) are then kept float and the plan is made again without
    them. Returns the plan, the ranges and the config that made the plan (its ``exclude`` lists those nodes;
    ``plan.range_reasons`` says why, and passed back as ``known_reasons`` keeps saying so)."""
    ranges = dict(known or {})
    plan = plan_graph(graph, config)
    inputs = {t.name for t in graph.inputs}  # data, not sentinels: a spiky input is the data's problem (warned)
    reasons: dict[str, str] = dict(known_reasons or {})
    tried: set[str] = set()
    for _ in range(8):  # each round only removes nodes; a few rounds settle every chain
        todo = [t for t in plan.calibrated if t not in ranges and t not in tried]
        if todo:
            ranges.update(calibrate(graph, Plan(calibrated=todo), config, ctx))
            tried.update(todo)
        missing = {t for t in plan.calibrated if t not in ranges}
        huge = {t for t in plan.calibrated if t in ranges and t not in inputs
                and max(abs(ranges[t][0]), abs(ranges[t][1])) >= SENTINEL}
        mixed = {} if missing or huge else mixed_concats(graph, plan, {**ranges, **plan.fixed_ranges})
        if not missing and not huge and not mixed:
            break
        reasons.update(mixed)
        for tensors, why in ((missing, "its inputs were never computed on the calibration data (a branch no sample "
                                       "takes)"), (huge, None)):
            for node in _owners(plan, tensors):
                t = next(x for x in sorted(tensors) if x in _tensors_of(plan, node))
                reasons[node] = why or (f"tensor '{t}' reaches {ranges[t][0]:.3g}..{ranges[t][1]:.3g}: a sentinel "
                                        "value (e.g. an attention mask's -FLT_MAX) no 8/16-bit range can hold")
        dropped = sorted(set(_owners(plan, missing | huge)) | set(mixed))
        config = replace(config, exclude=config.exclude + tuple(_exactly(n) for n in dropped))
        plan = plan_graph(graph, config)
    plan.skipped.update({n: r for n, r in reasons.items() if n in plan.skipped})
    plan.range_reasons = reasons
    ranges.update(plan.fixed_ranges)
    return plan, ranges, config


#: a Concat whose inputs' ranges differ more than this stays float: one shared scale would leave the narrowest
#: input under 256 / 16 = 16 levels (a detector head's [boxes in pixels, class scores in 0..1])
CONCAT_SPREAD = 16.0


def mixed_concats(graph: gs.Graph, plan: Plan, ranges: dict[str, tuple[float, float]]) -> dict[str, str]:
    """Quantized Concat nodes whose inputs' calibrated ranges differ more than :data:`CONCAT_SPREAD` times,
    with the reason to keep each float. (The sensitivity proxy cannot see this: the wide input dominates the
    Concat's output SQNR while the narrow one is crushed.)"""
    nodes = {n.name: n for n, _ in nodes_with_graphs(graph)}
    out = {}
    for name, kind in plan.nodes.items():
        if kind != "concat":
            continue
        widths = []
        for t in nodes[name].inputs:
            r = _source_range(t, plan, ranges)
            if r is not None:
                widths.append((max(r[1], 0.0) - min(r[0], 0.0), t.name, r))
        if len(widths) < 2:
            continue
        narrow, wide = min(widths), max(widths)
        if narrow[0] > 0 and wide[0] / narrow[0] > CONCAT_SPREAD:
            out[name] = (f"its inputs' ranges differ {wide[0] / narrow[0]:.0f}x ('{wide[1]}' {wide[2][0]:.3g}.."
                         f"{wide[2][1]:.3g}, '{narrow[1]}' {narrow[2][0]:.3g}..{narrow[2][1]:.3g}): one shared int8 "
                         f"scale would leave the narrower input {255 * narrow[0] / wide[0]:.0f} levels")
    return out


def _source_range(t: gs.Tensor, plan: Plan, ranges: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The calibrated range of ``t``, or of the tensor it passes through (Reshape, Transpose, ...) unchanged."""
    for _ in range(64):
        if t.name in ranges or not t.inputs or plan.nodes.get(t.inputs[0].name) != "passthrough":
            break
        t = t.inputs[0].inputs[0]
    return ranges.get(t.name)


def _owners(plan: Plan, tensors: set[str]) -> list[str]:
    return sorted({s.node for s in plan.specs if s.tensor in tensors}
                  | {plan.output_of[t] for t in tensors if t in plan.output_of})


def _tensors_of(plan: Plan, node: str) -> set[str]:
    return {s.tensor for s in plan.specs if s.node == node} | {t for t, o in plan.output_of.items() if o == node}


def _exactly(name: str) -> str:
    return "re:^" + re.escape(name) + "$"


def _snapshot(graph: gs.Graph) -> onnx.ModelProto:

    return to_model(graph.copy())


# --- calibration ------------------------------------------------------------------------------------------------
def calibration_model(graph: gs.Graph, names: list[str]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The float graph with every tensor to calibrate added as an output; tensors inside If/Loop/Scan subgraphs
    are threaded out (see ir.subgraphs.expose). Returns (model, {session output name: tensor name})."""
    homes = defining_graph(graph)
    inner = [n for n in names if homes.get(n, graph) is not graph]
    if not inner:
        return expose_outputs(to_model(graph.copy()), names), {n: n for n in names}
    copy = graph.copy()
    tensors, homes, chains = all_tensors(copy), defining_graph(copy), nesting(copy)
    fresh = Names(copy)
    out_names: dict[str, str] = {}
    for name in names:
        home = homes.get(name, copy)
        if home is copy:
            if not any(o.name == name for o in copy.outputs):
                copy.outputs.append(tensors[name])
            out_names[name] = name
            continue
        exposed = expose(copy, tensors[name], home, fresh, chains)
        if exposed is not None:
            out_names[exposed.name] = name
    return to_model(copy), out_names


def calibrate(graph: gs.Graph, plan: Plan, config: QuantizeConfig, ctx: PassContext) -> dict[str, tuple[float, float]]:
    """Stream the calibration data through the float graph; (min, max) per calibrated tensor."""

    names = [n for n in plan.calibrated if n not in _fixed_range(config)]
    if not names:
        return {n: config.overrides[n].range for n in plan.calibrated}
    model, exposed = calibration_model(graph, names)
    session = make_session(model, SessionOptions(providers="cpu", opt_level="basic", memory_arena=False))
    data = _calibration_data(ctx.calibration, model, config, session, list(exposed))
    bound = data.bind(model_input_specs(model))
    inputs = {t.name for t in graph.inputs}  # the data itself (spiky: e.g. a constant background) keeps min/max
    collector = Collector(names, config.num_bins if config.calibrator != "minmax" else 0,
                          histograms=frozenset(n for n in names if n in inputs))
    batches = -(-len(data) // data.batch_size) if data.batch_size else None
    with track(ctx.progress, f"calibrate ({config.calibrator}, {len(names)} tensors)", batches, "batches") as step:
        collected = collector.collect(_outputs(session, bound, exposed, step))  # one pass, every calibrator
    del session, model
    release_memory()  # a large model's calibration session goes back to the system before the weights are read
    if collected == 0:
        raise EmptyDataError(f"{data.source} contains no samples", hint="give at least one calibration sample")
    _check_sanity(collector, [n for n in names if n in inputs], config, ctx)
    levels = P.qrange(config.act_dtype)[1] - P.qrange(config.act_dtype)[0]
    ranges = {}
    for name in names:
        s = collector.stats[name]
        if s.count == 0:  # never computed on this data (a branch no sample takes): its consumers stay float
            continue
        if not (np.isfinite(s.rmin) and np.isfinite(s.rmax)):
            raise NonFiniteDataError(f"tensor '{name}' has an empty or non-finite calibrated range [{s.rmin}, {s.rmax}]",
                                     hint="check the calibration data, or set a range override for this tensor")
        method = "minmax" if name in inputs else config.calibrator
        ranges[name] = compute_range(s, method, percentile=config.percentile, levels=levels)
    ranges.update({n: config.overrides[n].range for n in plan.calibrated if n in _fixed_range(config)})
    return ranges


@dataclass(frozen=True)
class CalibrationWarnings:
    """What looked wrong with the calibration data (reported; errors with ``strict``)."""

    messages: tuple[str, ...]


def _check_sanity(collector: Collector, inputs: list[str], config: QuantizeConfig, ctx: PassContext) -> None:
    messages = sanity_warnings(collector.stats, inputs)
    for m in messages:
        log.warning("%s", m)
        ctx.decide("QuantizeQDQPass", m.split("'")[1] if "'" in m else "calibration", "warned", m)
    if messages and config.strict:
        raise DataError(messages[0], hint="clean the calibration data (strict: calibration warnings are errors)")
    previous = ctx.get(CalibrationWarnings)
    ctx.put(CalibrationWarnings((previous.messages if previous else ()) + tuple(messages)))


def _fixed_range(config: QuantizeConfig) -> set[str]:
    return {n for n, ov in config.overrides.items() if ov.range is not None}


def _calibration_data(data, model: onnx.ModelProto, config: QuantizeConfig, session, names: list[str]):
    """The calibration stream: a static batch dimension is kept; otherwise the batch is the largest (up to
    ``batch_size``) whose calibrated activations fit in ``calibration_memory_mb``."""
    specs = model_input_specs(model)
    static = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)}
    data = data.limited(config.calibration_samples)
    if len(static) == 1:
        return data.batched(next(iter(static)))
    first = next(data.batched(1).limited(1).bind(specs).feeds(), None)
    if first is None:
        raise EmptyDataError(f"{data.source} contains no samples", hint="give at least one calibration sample")
    try:
        batch = batch_for_budget(session, first, names, config.calibration_memory_mb << 20, config.batch_size)
    except Exception as e:  # onnxruntime raises its own classes for shape/type mismatches
        raise InputMismatchError(f"the model failed on the calibration data: {str(e).splitlines()[0]}",
                                 hint="check that the calibration data matches the model's inputs") from e
    if batch < config.batch_size:
        log.info("calibration batch %d (of at most %d): one batch's activations fit in %d MB", batch,
                 config.batch_size, config.calibration_memory_mb)
    return data.batched(batch)


def _outputs(session, bound, exposed: dict[str, str], step: ProgressTask):
    """{tensor name: value} per batch; ``exposed`` maps the session's output names to the tensors they carry."""
    outputs = list(exposed)
    for feeds in bound.feeds():
        try:
            values = session.run(outputs, feeds)
        except Exception as e:  # onnxruntime raises its own classes for shape/type mismatches
            raise InputMismatchError(f"the model failed on the calibration data: {str(e).splitlines()[0]}",
                                     hint="check that the calibration data matches the model's inputs") from e
        yield {exposed[o]: v for o, v in zip(outputs, values) if v is not None}
        step.advance()


# --- parameters -------------------------------------------------------------------------------------------------
def group_params(plan: Plan, ranges: dict[str, tuple[float, float]], config: QuantizeConfig) -> dict[str, P.QParams]:
    """One QParams per group root; every member tensor maps to its root's parameters."""
    out: dict[str, P.QParams] = {}
    for members in plan.groups.members().values():
        measured = [ranges[m] for m in members if m in ranges]
        if not measured:
            raise UserError(f"no calibrated range for tensor group {members}", hint="report this model as a bug")
        lo, hi = min(r[0] for r in measured), max(r[1] for r in measured)
        dtype, symmetric = config.act_dtype, config.act_symmetric
        for m in members:
            ov = config.overrides.get(m)
            if ov is not None:
                dtype = ov.dtype or dtype
                symmetric = ov.symmetric if ov.symmetric is not None else (dtype in ("int8", "int16"))
        qp = P.activation_params(lo, hi, dtype, symmetric)
        for m in members:
            out[m] = qp
    return out


# --- materialization --------------------------------------------------------------------------------------------
def materialize(graph: gs.Graph, plan: Plan, qparams: dict[str, P.QParams], config: QuantizeConfig) -> dict[str, Any]:
    """Insert the Q/DQ pairs and the quantized weights; inside a subgraph they go into the graph of the nodes that
    use them (onnxruntime fuses Q/DQ with a node only within one graph)."""
    tensors, homes = all_tensors(graph), defining_graph(graph)
    node_graph = {n.name: g for n, g in nodes_with_graphs(graph)}
    names = Names(graph)
    made: dict[str, Materialized] = {}
    readers = int8_readers(graph, plan)
    for name in plan.activations:
        made[name] = _insert_qdq_scoped(homes.get(name, graph), tensors[name], qparams[name], names, node_graph,
                                        readers.get(name))
    consts: dict[tuple, gs.Variable] = {}
    nodes = {n.name: n for n, _ in nodes_with_graphs(graph)}
    act_in = {(s.node, s.index): s.tensor for s in plan.specs if s.role == "activation"}
    grown = 0
    for spec in plan.specs:
        if spec.role == "weight":
            x_scale = float(qparams[act_in[(spec.node, 0)]].scale)
            grown += _quantize_weight_and_bias(node_graph[spec.node], nodes[spec.node], spec, x_scale, consts, config,
                                               names)
    lowered = lower_hard_activations(graph, plan.lowered, names) if config.resolved_target.provider == "cpu" else 0
    return {"qdq_pairs": len(made), "weights": sum(s.role == "weight" for s in plan.specs),
            "bias_saturation_channels": grown, "lowered_activations": lowered}


def int8_readers(graph: gs.Graph, plan: Plan) -> dict[str, set[str]]:
    """For each activation tensor whose producer stays float (a graph input or a float node): the nodes that read
    it in int8. Only they read its DequantizeLinear; float readers keep the exact float value (and no
    DequantizeLinear runs for them). Tensors with a quantized producer are absent: every reader reads the DQ."""
    quantized = set(plan.output_of) | {o.name for n, _ in nodes_with_graphs(graph)
                                       if plan.nodes.get(n.name) == "passthrough" for o in n.outputs}
    out: dict[str, set[str]] = {}
    for s in plan.specs:
        if s.role == "activation" and s.tensor not in quantized:
            out.setdefault(s.tensor, set()).add(s.node)
    return out


def _insert_qdq_scoped(home: gs.Graph, tensor: gs.Variable, qp: P.QParams, names: Names,
                       node_graph: dict[str, gs.Graph], readers: set[str] | None = None) -> Materialized:
    """One Q/DQ pair in the tensor's own graph; another in every subgraph that reads it from the outer scope, so
    each subgraph's nodes see a local DequantizeLinear. With ``readers``, only those nodes read the DQ."""
    elsewhere: dict[int, tuple[gs.Graph, list[tuple[gs.Node, int]]]] = {}
    for consumer in tensor.outputs:
        g = node_graph.get(consumer.name, home)
        if readers is not None and consumer.name not in readers:
            continue
        if g is not home:
            slots = [i for i, inp in enumerate(consumer.inputs) if inp is tensor]
            elsewhere.setdefault(id(g), (g, []))[1].extend((consumer, i) for i in slots)
    made = _insert_qdq(home, tensor, qp, names, readers)
    for g, slots in elsewhere.values():
        source = tensor if not slots or slots[0][0].inputs[slots[0][1]].name == made.dequantized \
            else slots[0][0].inputs[slots[0][1]]  # a graph output kept its name for the DQ: read the float copy
        dq = _qdq_pair(g, source, qp, names)
        for consumer, i in slots:
            consumer.inputs[i] = dq
    return made


def _qdq_pair(graph: gs.Graph, tensor: gs.Tensor, qp: P.QParams, names: Names) -> gs.Variable:
    base = tensor.name
    scale = gs.Constant(names.tensor(base + "_scale"), qp.scale)
    zp = gs.Constant(names.tensor(base + "_zero_point"), qp.zero_point)
    q = gs.Variable(names.tensor(base + "_quantized"), dtype=P.NP_DTYPES[qp.dtype], shape=tensor.shape)
    dq = gs.Variable(names.tensor(base + "_dequantized"), dtype=np.float32, shape=tensor.shape)
    _qdq_nodes(graph, base, tensor, q, dq, scale, zp, qp.dtype, names)
    return dq


def _insert_qdq(graph: gs.Graph, tensor: gs.Variable, qp: P.QParams, names: Names,
                readers: set[str] | None = None) -> Materialized:
    if readers is None and tensor.inputs and any(o is tensor for o in graph.outputs):
        return _insert_qdq_on_output(graph, tensor, qp, names)
    base = tensor.name
    scale = gs.Constant(names.tensor(base + "_scale"), qp.scale)
    zp = gs.Constant(names.tensor(base + "_zero_point"), qp.zero_point)
    q = gs.Variable(names.tensor(base + "_quantized"), dtype=P.NP_DTYPES[qp.dtype], shape=tensor.shape)
    dq = gs.Variable(names.tensor(base + "_dequantized"), dtype=np.float32, shape=tensor.shape)
    consumers = [c for c in tensor.outputs if readers is None or c.name in readers]
    _qdq_nodes(graph, base, tensor, q, dq, scale, zp, qp.dtype, names)
    for consumer in consumers:
        for i, inp in enumerate(consumer.inputs):
            if inp is tensor:
                consumer.inputs[i] = dq
    return Materialized(q.name, dq.name)


def _qdq_nodes(graph: gs.Graph, base: str, x, q, dq, scale, zp, dtype: str, names: Names) -> None:
    """Q and DQ nodes; 16-bit types use onnxruntime's com.microsoft Q/DQ (the ONNX ops need opset 21 for them)."""
    domain = MS_DOMAIN if dtype in ("int16", "uint16") and _opset(graph) < 21 else None
    graph.nodes.append(gs.Node("QuantizeLinear", names.node(base + "_QuantizeLinear"), inputs=[x, scale, zp],
                               outputs=[q], domain=domain))
    graph.nodes.append(gs.Node("DequantizeLinear", names.node(base + "_DequantizeLinear"), inputs=[q, scale, zp],
                               outputs=[dq], domain=domain))
    if domain and not any(d == MS_DOMAIN for d in graph.import_domains or []):
        graph.import_domains = list(graph.import_domains or []) + [onnx.helper.make_opsetid(MS_DOMAIN, 1)]


def _opset(graph: gs.Graph) -> int:
    return int(graph.opset or 0)


def _insert_qdq_on_output(graph: gs.Graph, tensor: gs.Variable, qp: P.QParams, names: Names) -> Materialized:
    """A graph output keeps its name and becomes the DequantizeLinear's output, so its producer's only consumer is
    the QuantizeLinear (what ORT needs to fuse the producer)."""
    base = tensor.name
    raw = gs.Variable(names.tensor(base + "_float"), dtype=tensor.dtype, shape=tensor.shape)
    producer = tensor.inputs[0]
    producer.outputs[producer.outputs.index(tensor)] = raw
    for consumer in list(tensor.outputs):
        consumer.inputs[consumer.inputs.index(tensor)] = raw
    scale = gs.Constant(names.tensor(base + "_scale"), qp.scale)
    zp = gs.Constant(names.tensor(base + "_zero_point"), qp.zero_point)
    q = gs.Variable(names.tensor(base + "_quantized"), dtype=P.NP_DTYPES[qp.dtype], shape=tensor.shape)
    _qdq_nodes(graph, base, raw, q, tensor, scale, zp, qp.dtype, names)
    return Materialized(q.name, tensor.name)


def _quantize_weight_and_bias(graph: gs.Graph, node: gs.Node, spec, x_scale: float, consts, config,
                              names: Names) -> int:
    """int8 weight + DQ (and the int32 bias + DQ when the node has one); returns the channels grown for the bias."""
    w = constant_value(node.inputs[1]).astype(np.float32)
    wp = P.weight_params(w, spec.axis, config.resolved_reduce_range()[0])
    has_bias = node.op != "MatMul" and len(node.inputs) > 2 and node.inputs[2].name
    grown = 0
    if has_bias:
        bias = constant_value(node.inputs[2]).astype(np.float32).reshape(-1)
        if wp.axis is not None:
            bias = np.broadcast_to(bias, wp.scale.shape).copy()
        wp, grown = P.fit_weight_to_bias(wp, bias, x_scale)
        bp = P.bias_params(x_scale, wp)
        node.inputs[2] = _const_dq(graph, f"{node.name}_bias", P.quantize_bias(bias, bp), bp, consts, names)
    qw = P.quantize_array(w, wp, symmetric_weight=True)
    old = node.inputs[1]
    node.inputs[1] = _const_dq(graph, old.name, qw, wp, consts, names)
    if isinstance(old, gs.Constant):
        release(old)  # a weight read from disk is not kept in memory as float once quantized
    return grown


def _const_dq(graph: gs.Graph, base: str, q: np.ndarray, qp: P.QParams, consts: dict, names: Names) -> gs.Variable:
    """DequantizeLinear of a constant integer tensor, shared between nodes with identical values and parameters."""
    key = (base, q.dtype.str, q.shape, hashlib.sha256(np.ascontiguousarray(q)).digest(), qp.key())
    if key in consts:
        return consts[key]
    suffix = f"_{len([k for k in consts if k[0] == base])}" if any(k[0] == base for k in consts) else ""
    name = base + suffix
    attrs = {"axis": qp.axis} if qp.axis is not None else {}
    out = gs.Variable(names.tensor(name + "_dequantized"), dtype=np.float32, shape=list(q.shape))
    inputs = [gs.Constant(names.tensor(name + "_quantized"), q), gs.Constant(names.tensor(name + "_scale"), qp.scale),
              gs.Constant(names.tensor(name + "_zero_point"), qp.zero_point)]
    graph.nodes.append(gs.Node("DequantizeLinear", names.node(name + "_DequantizeLinear"), attrs=attrs, inputs=inputs,
                               outputs=[out]))
    consts[key] = out
    return out
