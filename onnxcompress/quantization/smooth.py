"""SmoothQuant-style scale migration: move activation outliers into the weights before INT8 quantization.

For a LayerNormalization whose output feeds only MatMul/Gemm nodes with constant weights, per input channel j:
``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``; the LayerNorm's scale and bias are divided by s and every
consumer's weight row j is multiplied by s. The float function is unchanged (up to rounding); the activation's
per-tensor range shrinks where a few channels carried outliers, and the per-channel weight scales absorb them.
Channel maxima come from one streaming pass over the calibration data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import EmptyDataError, RecipeError
from onnxcompress.ir.edit import Names, expose_outputs
from onnxcompress.ir.graph import to_model
from onnxcompress.ir.query import constant_value, is_constant, is_graph_output
from onnxcompress.ops.facts import trans_a, trans_b
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.runtime.session import SessionOptions, make_session

log = logging.getLogger(__name__)
SMOOTH_PRODUCERS = ("LayerNormalization",)


def _consumer_weight(node: gs.Node, x: gs.Tensor) -> tuple[np.ndarray, int] | None:
    """(weight, axis of the input channels) when ``node`` multiplies ``x`` by a constant matrix."""
    if node.inputs[0] is not x or len(node.inputs) < 2:
        return None
    w = constant_value(node.inputs[1])
    if w is None or w.ndim != 2:
        return None
    if node.op == "MatMul":
        return w, 0
    if node.op == "Gemm" and not trans_a(node):
        return w, 1 if trans_b(node) else 0
    return None


def why_not_smooth(graph: gs.Graph, node: gs.Node) -> str | None:
    if node.op not in SMOOTH_PRODUCERS:
        return f"{node.op} is not a smoothable producer"
    if not is_constant(node.inputs[1]) or (len(node.inputs) > 2 and node.inputs[2].name
                                                  and not is_constant(node.inputs[2])):
        return "LayerNormalization scale/bias are not constants"
    if int(node.attrs.get("axis", -1)) not in (-1, len(node.inputs[0].shape or [0]) - 1):
        return "LayerNormalization does not normalize the last axis"
    y = node.outputs[0]
    if is_graph_output(graph, y) or not y.outputs:
        return "its output is a graph output or unused"
    if any(_consumer_weight(c, y) is None for c in y.outputs):
        return "its output feeds a node other than MatMul/Gemm with a constant weight"
    return None


@dataclass(frozen=True)
class SmoothedLayers:
    """The LayerNorms SmoothQuantPass migrated (left in the context for the report)."""

    alpha: float
    layers: tuple[str, ...]


class SmoothQuantPass(Pass):
    """Migrate quantization difficulty from LayerNorm outputs into the following weights (strength ``alpha``)."""

    def __init__(self, alpha: float = 0.5):
        if not 0 < alpha < 1:
            raise RecipeError(f"SmoothQuant alpha must be in (0, 1), got {alpha}", hint="e.g. 0.5")
        self.alpha = float(alpha)

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if ctx.calibration is None:
            raise EmptyDataError("SmoothQuant needs calibration data", hint="pass --calib DATA")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        candidates = []
        for node in graph.nodes:
            if node.op not in SMOOTH_PRODUCERS:
                continue
            reason = why_not_smooth(graph, node)
            if reason is None:
                candidates.append(node)
            else:
                ctx.decide(self.name, node.name, "not smoothed", reason)
        if not candidates:
            ctx.put(SmoothedLayers(self.alpha, ()))
            return PassResult(graph, False, {"smoothed": 0})
        amax = channel_absmax(graph, [n.outputs[0].name for n in candidates], ctx.calibration)
        names = Names(graph)
        for node in candidates:
            s = self._migrate(node, amax[node.outputs[0].name], names)
            ctx.decide(self.name, node.name, "smoothed", f"alpha {self.alpha}: scales {s.min():.3g}..{s.max():.3g}")
        ctx.put(SmoothedLayers(self.alpha, tuple(n.name for n in candidates)))
        return PassResult(graph, True, {"smoothed": len(candidates)})

    def _migrate(self, node: gs.Node, amax: np.ndarray, names: Names) -> np.ndarray:
        y = node.outputs[0]
        weights = [_consumer_weight(c, y) for c in y.outputs]
        wmax = np.max([np.abs(w).max(axis=1 - axis) for w, axis in weights], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.power(amax, self.alpha) / np.power(wmax, 1.0 - self.alpha)
        s = np.where(np.isfinite(s) & (s > 0), np.clip(s, 1e-4, 1e4), 1.0).astype(np.float32)
        for i in (1, 2):
            if i < len(node.inputs) and node.inputs[i].name:
                v = constant_value(node.inputs[i]).astype(np.float32)
                node.inputs[i] = gs.Constant(names.tensor(f"{node.inputs[i].name}_smoothed_{node.name}"),
                                             (v / s).astype(np.float32))
        for consumer, (w, axis) in zip(list(y.outputs), weights):
            shape = (-1, 1) if axis == 0 else (1, -1)
            scaled = (w.astype(np.float32) * s.reshape(shape)).astype(np.float32)
            consumer.inputs[1] = gs.Constant(names.tensor(f"{consumer.inputs[1].name}_smoothed_{consumer.name}"), scaled)
        return s


def channel_absmax(graph: gs.Graph, names: list[str], data) -> dict[str, np.ndarray]:
    """max |x| per last-axis channel of each tensor, streamed over the calibration data."""

    model = expose_outputs(to_model(graph.copy()), names)
    session = make_session(model, SessionOptions(providers="cpu", opt_level="basic"))
    out: dict[str, np.ndarray] = {}
    for feeds in data.batched(32).bind(model_input_specs(model)).feeds():
        for name, v in zip(names, session.run(names, feeds)):
            m = np.abs(v.reshape(-1, v.shape[-1])).max(axis=0)
            out[name] = m if name not in out else np.maximum(out[name], m)
    return out
