"""Apply a :class:`PrecisionPlan` to a graph: float32 initializers and activations of the low-precision region
become fp16/bf16, and a Cast is inserted only where a tensor crosses the region's border.

One Cast per (tensor, type), shared by every consumer that needs it; an initializer read by both sides is
stored once per type; Casts of the original graph that became identities are removed, and a Cast back to the
type a tensor was cast from reuses the original tensor (no ping-pong). With ``keep_io_types`` a low-precision
graph output is cast back to float32 under its original name. ``emulate`` builds the float32 twin used to check
bf16 on CPU (where onnxruntime has no bf16 kernels): every tensor of the low region is rounded to bf16 and back
(Cast -> bf16 -> Cast -> float32), initializers are rounded in place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ir.edit import Names, replace_all_uses
from onnxcompress.ir.query import is_graph_output
from onnxcompress.precision.plan import PrecisionPlan
from onnxcompress.precision.stats import GraphStats

log = logging.getLogger(__name__)

LOW_DTYPES = {"fp16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16)}
ONNX_TYPES = {"fp16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16, "fp32": onnx.TensorProto.FLOAT}


@dataclass(frozen=True)
class ConversionStats:
    casts_inserted: int
    casts_removed: int
    initializers_converted: int
    initializers_duplicated: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Converter:
    def __init__(self, graph: gs.Graph, plan: PrecisionPlan, stats: GraphStats):
        self.graph, self.plan, self.stats = graph, plan, stats
        self.low = LOW_DTYPES[plan.to]
        self.names = Names(graph)
        self.casts: dict[tuple[str, str], gs.Variable] = {}
        self.low_tensors: set[str] = set(plan.low_inputs)
        self.inserted = 0

    # --- what each tensor is and what each slot wants ---------------------------------------------------------
    def is_float(self, t: gs.Tensor) -> bool:
        if isinstance(t, gs.Constant):
            return t.values.dtype == np.float32
        return bool(t.name) and self.stats.is_float32(t.name)

    def wants(self, node: gs.Node, index: int) -> str | None:
        """'low', 'fp32' or None (the slot reads any type) for input ``index`` of ``node``."""
        rule = self.plan.rules.get(node.name)
        if rule is not None and rule.kind in ("any", "cast"):
            return None
        if node.name in self.plan.low:
            return "fp32" if index in rule.fp32_inputs else "low"
        return "fp32"

    # --- rewriting --------------------------------------------------------------------------------------------
    def convert_outputs(self) -> None:
        for t in self.graph.inputs:
            if t.name in self.plan.low_inputs:
                t.dtype = self.low
        for node in self.graph.nodes:
            if node.name not in self.plan.low:
                continue
            rule = self.plan.rules[node.name]
            if rule.kind == "cast":
                node.attrs["to"] = ONNX_TYPES[self.plan.to]
            for i, t in enumerate(node.outputs):
                if self.is_float(t) and i not in rule.fp32_outputs:
                    t.dtype = self.low
                    self.low_tensors.add(t.name)

    def convert_initializers(self) -> tuple[int, int]:
        converted = duplicated = 0
        uses: dict[int, tuple[gs.Constant, list[tuple[gs.Node, int, str]]]] = {}
        for node in self.graph.nodes:
            for i, t in enumerate(node.inputs):
                if isinstance(t, gs.Constant) and t.values.dtype == np.float32:
                    want = self.wants(node, i)
                    if want is not None:
                        uses.setdefault(id(t), (t, []))[1].append((node, i, want))
        for const, slots in uses.values():
            kinds = {w for _, _, w in slots}
            if kinds == {"low"}:
                const.values = const.values.astype(self.low)
                converted += 1
            elif "low" in kinds:
                copy = gs.Constant(self.names.tensor(f"{const.name}_{self.plan.to}"), const.values.astype(self.low))
                for node, i, want in slots:
                    if want == "low":
                        node.inputs[i] = copy
                duplicated += 1
        return converted, duplicated

    def cast_of(self, t: gs.Variable, want: str) -> gs.Variable:
        key = (t.name, want)
        if key not in self.casts:
            source = _cast_source(t, want)
            if source is not None:  # casting back what a Cast just changed: read the original
                self.casts[key] = source
                return source
            dtype = self.low if want == "low" else np.dtype(np.float32)
            out = gs.Variable(self.names.tensor(f"{t.name}_{self.plan.to if want == 'low' else 'fp32'}"), dtype=dtype,
                              shape=t.shape)
            self.graph.nodes.append(gs.Node("Cast", self.names.node(f"{t.name}_Cast_{want}"),
                                            attrs={"to": ONNX_TYPES[self.plan.to if want == "low" else "fp32"]},
                                            inputs=[t], outputs=[out]))
            self.inserted += 1
            self.casts[key] = out
        return self.casts[key]

    def insert_casts(self) -> None:
        for node in list(self.graph.nodes):
            for i, t in enumerate(node.inputs):
                if not isinstance(t, gs.Variable) or not self.is_float(t):
                    continue
                want = self.wants(node, i)
                have = "low" if t.name in self.low_tensors else "fp32"
                if want is not None and want != have:
                    node.inputs[i] = self.cast_of(t, want)

    def restore_outputs(self, keep_io_types: bool) -> None:
        if not keep_io_types:
            return
        for k, t in enumerate(self.graph.outputs):
            if t.name not in self.low_tensors:
                continue
            original = t.name
            t.name = self.names.tensor(f"{original}_{self.plan.to}")
            out = gs.Variable(original, dtype=np.float32, shape=t.shape)
            self.graph.nodes.append(gs.Node("Cast", self.names.node(f"{original}_Cast_fp32"),
                                            attrs={"to": onnx.TensorProto.FLOAT}, inputs=[t], outputs=[out]))
            self.inserted += 1
            self.graph.outputs[k] = out


def _cast_source(t: gs.Variable, want: str) -> gs.Variable | None:
    """If ``t`` is the output of a Cast whose input already has the wanted type, that input."""
    producer = t.inputs[0] if t.inputs else None
    if producer is None or producer.op != "Cast" or not producer.inputs:
        return None
    src = producer.inputs[0]
    src_low = src.dtype is not None and np.dtype(src.dtype) in LOW_DTYPES.values()
    if isinstance(src, gs.Variable) and ((want == "low" and src_low) or (want == "fp32" and src.dtype == np.float32)):
        return src
    return None


def remove_identity_casts(graph: gs.Graph) -> int:
    """Casts whose input already has the target type: their consumers read the input directly."""
    removed = 0
    for node in list(graph.nodes):
        if node.op != "Cast" or not node.inputs or node.inputs[0].dtype is None:
            continue
        src, out = node.inputs[0], node.outputs[0]
        target = onnx.helper.tensor_dtype_to_np_dtype(int(node.attrs["to"]))
        if np.dtype(src.dtype) != np.dtype(target) or is_graph_output(graph, out):
            continue
        replace_all_uses(out, src)
        node.inputs.clear()
        node.outputs.clear()
        removed += 1
    return removed


def convert(graph: gs.Graph, plan: PrecisionPlan, stats: GraphStats, keep_io_types: bool) -> ConversionStats:
    """Rewrite ``graph`` in place following ``plan``."""
    conv = _Converter(graph, plan, stats)
    conv.convert_outputs()
    converted, duplicated = conv.convert_initializers()
    conv.insert_casts()
    conv.restore_outputs(keep_io_types)
    removed = remove_identity_casts(graph)
    graph.cleanup().toposort()
    return ConversionStats(conv.inserted, removed, converted, duplicated)


def emulate(graph: gs.Graph, plan: PrecisionPlan, stats: GraphStats) -> gs.Graph:
    """The float32 twin of the converted graph (see the module docstring); ``graph`` is a copy it may change."""
    low = LOW_DTYPES[plan.to]
    names = Names(graph)
    rounded: dict[int, gs.Constant] = {}
    for node in list(graph.nodes):
        if node.name not in plan.low:
            continue
        rule = plan.rules[node.name]
        for i, t in enumerate(node.inputs):
            if isinstance(t, gs.Constant) and t.values.dtype == np.float32 and i not in rule.fp32_inputs:
                if id(t) not in rounded:
                    rounded[id(t)] = gs.Constant(names.tensor(f"{t.name}_{plan.to}_rounded"),
                                                 t.values.astype(low).astype(np.float32))
                node.inputs[i] = rounded[id(t)]
        for i, t in enumerate(node.outputs):
            if i in rule.fp32_outputs or not stats.is_float32(t.name):
                continue
            _round_after(graph, t, plan.to, names)
    for t in graph.inputs:
        if t.name in plan.low_inputs:
            _round_after(graph, t, plan.to, names)
    graph.cleanup().toposort()
    return graph


def _round_after(graph: gs.Graph, t: gs.Variable, to: str, names: Names) -> None:
    """Consumers of ``t`` (and a graph output named ``t``) read ``t`` rounded to ``to``."""
    mid = gs.Variable(names.tensor(f"{t.name}_{to}"), dtype=LOW_DTYPES[to])
    back = gs.Variable(names.tensor(f"{t.name}_{to}_fp32"), dtype=np.float32, shape=t.shape)
    consumers = list(t.outputs)
    graph.nodes.append(gs.Node("Cast", names.node(f"{t.name}_round_{to}"), attrs={"to": ONNX_TYPES[to]},
                               inputs=[t], outputs=[mid]))
    graph.nodes.append(gs.Node("Cast", names.node(f"{t.name}_round_fp32"), attrs={"to": onnx.TensorProto.FLOAT},
                               inputs=[mid], outputs=[back]))
    for consumer in consumers:
        for i, x in enumerate(consumer.inputs):
            if x is t:
                consumer.inputs[i] = back
    for k, o in enumerate(graph.outputs):
        if o is t:
            original = t.name
            t.name = names.tensor(f"{original}_unrounded")
            back.name = original
            graph.outputs[k] = back
