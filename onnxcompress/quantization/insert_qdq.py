"""QuantizeQDQPass: the one pass that calibrates the current graph and inserts QuantizeLinear/DequantizeLinear.

Activations: ``T -> QuantizeLinear -> DequantizeLinear -> (every consumer of T)``; weights: int8 initializer +
DequantizeLinear (per-channel along the rule's axis); bias: int32 at ``s_in * s_w`` with zero point 0 (weight scales
grow where the bias would saturate int32). Tensors of one group (pass-through, Concat) share one scale. Every
inserted tensor and node gets a fresh name (:class:`onnxcompress.ir.edit.Names`): an existing ``x_scale`` is
never captured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import DataError, EmptyDataError, InputMismatchError, NonFiniteDataError, UserError
from onnxcompress.ir.edit import Names, expose_outputs, name_nodes
from onnxcompress.ir.graph import to_model
from onnxcompress.ir.query import constant_bytes, constant_value
from onnxcompress.ops.facts import quantized_ops
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.quantization import params as P
from onnxcompress.quantization.calibrate import Collector, compute_range, sanity_warnings
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.plan import Plan, plan_graph
from onnxcompress.runtime.session import SessionOptions, batch_for_budget, make_session

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
        plan = plan_graph(graph, self.config)
        for node, reason in plan.skipped.items():
            ctx.decide(self.name, node, "kept float", reason)
        ranges = calibrate(graph, plan, self.config, ctx)
        qparams = group_params(plan, ranges, self.config)
        float_model = _snapshot(graph) if self.config.bias_correction else None
        stats = materialize(graph, plan, qparams, self.config)
        graph.cleanup(remove_unused_node_outputs=False).toposort()
        ctx.put(QuantizationPlan(plan, ranges, qparams, float_model, bytes_before))
        stats.update(quantized_nodes=len(plan.nodes), skipped_nodes=len(plan.skipped),
                     activations=len(plan.activations), calibrated=len(plan.calibrated))
        return PassResult(graph, bool(plan.nodes), stats)


def _snapshot(graph: gs.Graph) -> onnx.ModelProto:

    return to_model(graph.copy())


# --- calibration ------------------------------------------------------------------------------------------------
def calibration_model(graph: gs.Graph, names: list[str]) -> onnx.ModelProto:
    """The float graph with every tensor to calibrate added as an output."""

    return expose_outputs(to_model(graph.copy()), names)


def calibrate(graph: gs.Graph, plan: Plan, config: QuantizeConfig, ctx: PassContext) -> dict[str, tuple[float, float]]:
    """Stream the calibration data through the float graph; (min, max) per calibrated tensor."""

    names = [n for n in plan.calibrated if n not in _fixed_range(config)]
    if not names:
        return {n: config.overrides[n].range for n in plan.calibrated}
    model = calibration_model(graph, names)
    session = make_session(model, SessionOptions(providers="cpu", opt_level="basic", memory_arena=False))
    data = _calibration_data(ctx.calibration, model, config, session, names)
    bound = data.bind(model_input_specs(model))
    inputs = {t.name for t in graph.inputs}  # the data itself (spiky: e.g. a constant background) keeps min/max
    collector = Collector(names, config.num_bins if config.calibrator != "minmax" else 0,
                          histograms=frozenset(n for n in names if n in inputs))
    if collector.collect(_outputs(session, bound, names)) == 0:  # one pass over the data, every calibrator
        raise EmptyDataError(f"{data.source} contains no samples", hint="give at least one calibration sample")
    _check_sanity(collector, [n for n in names if n in inputs], config, ctx)
    levels = P.qrange(config.act_dtype)[1] - P.qrange(config.act_dtype)[0]
    ranges = {}
    for name in names:
        s = collector.stats[name]
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


def _outputs(session, bound, names: list[str]):
    for feeds in bound.feeds():
        try:
            values = session.run(names, feeds)
        except Exception as e:  # onnxruntime raises its own classes for shape/type mismatches
            raise InputMismatchError(f"the model failed on the calibration data: {str(e).splitlines()[0]}",
                                     hint="check that the calibration data matches the model's inputs") from e
        yield dict(zip(names, values))


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
    tensors = graph.tensors()
    names = Names(graph)
    made: dict[str, Materialized] = {}
    for name in plan.activations:
        made[name] = _insert_qdq(graph, tensors[name], qparams[name], names)
    consts: dict[tuple, gs.Variable] = {}
    nodes = {n.name: n for n in graph.nodes}
    act_in = {(s.node, s.index): s.tensor for s in plan.specs if s.role == "activation"}
    grown = 0
    for spec in plan.specs:
        if spec.role == "weight":
            x_scale = float(qparams[act_in[(spec.node, 0)]].scale)
            grown += _quantize_weight_and_bias(graph, nodes[spec.node], spec, x_scale, consts, config, names)
    return {"qdq_pairs": len(made), "weights": sum(s.role == "weight" for s in plan.specs),
            "bias_saturation_channels": grown}


def _insert_qdq(graph: gs.Graph, tensor: gs.Variable, qp: P.QParams, names: Names) -> Materialized:
    if any(o is tensor for o in graph.outputs):
        return _insert_qdq_on_output(graph, tensor, qp, names)
    base = tensor.name
    scale = gs.Constant(names.tensor(base + "_scale"), qp.scale)
    zp = gs.Constant(names.tensor(base + "_zero_point"), qp.zero_point)
    q = gs.Variable(names.tensor(base + "_quantized"), dtype=P.NP_DTYPES[qp.dtype], shape=tensor.shape)
    dq = gs.Variable(names.tensor(base + "_dequantized"), dtype=np.float32, shape=tensor.shape)
    consumers = list(tensor.outputs)
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
    node.inputs[1] = _const_dq(graph, node.inputs[1].name, qw, wp, consts, names)
    return grown


def _const_dq(graph: gs.Graph, base: str, q: np.ndarray, qp: P.QParams, consts: dict, names: Names) -> gs.Variable:
    """DequantizeLinear of a constant integer tensor, shared between nodes with identical values and parameters."""
    key = (base, q.tobytes(), qp.key())
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
