"""SmoothQuant-style scale migration: move activation outliers into the weights before INT8 quantization.

For a normalization (LayerNormalization, or onnxruntime's SkipLayerNormalization output 0) whose output feeds
MatMul/Gemm nodes with constant weights, per input channel j: ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``;
every such consumer's weight row j is multiplied by s and it reads ``X / s``. When those layers are the output's
only readers, the division is folded into the normalization's scale and bias (no new node); when the output also
feeds something else (the residual branch of a post-LN transformer such as BERT), one ``Mul(X, 1/s)`` is inserted
for the smoothed layers and the other readers keep X. The float function is unchanged (up to rounding); the
activation's per-tensor range shrinks where a few channels carried outliers, and the per-channel weight scales
absorb them. Channel maxima come from one streaming pass over the calibration data.

``auto`` (the default of ``QuantizeConfig.smooth_quant``) smooths only the outputs whose largest channel maximum
is at least ``OUTLIER_RATIO`` times the median channel maximum (measured on all-MiniLM-L6-v2: the outputs that
carry BERT's outlier channels are 11-16x, the others 3-6x; sentence-embedding cosine of the INT8 model 0.988 ->
0.995 with alpha 0.5), with alpha 0.5; every output it leaves alone is recorded with its ratio.
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
#: normalization op -> (input indices of its scale and bias); output 0 is the normalized value
SMOOTH_PRODUCERS = {"LayerNormalization": (1, 2), "SkipLayerNormalization": (2, 3)}
#: ``auto`` smooths an output whose max channel |x| is this many times its median channel |x|
OUTLIER_RATIO = 8.0
AUTO_ALPHA = 0.5


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
    scale, bias = SMOOTH_PRODUCERS[node.op]
    if not is_constant(node.inputs[scale]) or (len(node.inputs) > bias and node.inputs[bias].name
                                                      and not is_constant(node.inputs[bias])):
        return f"{node.op} scale/bias are not constants"
    if int(node.attrs.get("axis", -1)) not in (-1, len(node.inputs[0].shape or [0]) - 1):
        return f"{node.op} does not normalize the last axis"
    y = node.outputs[0]
    if not any(_consumer_weight(c, y) is not None for c in y.outputs):
        return "its output feeds no MatMul/Gemm with a constant weight"
    return None


def _folds(graph: gs.Graph, node: gs.Node) -> bool:
    """The smoothed layers are the output's only readers: 1/s folds into the normalization's scale and bias."""
    y = node.outputs[0]
    return not is_graph_output(graph, y) and all(_consumer_weight(c, y) is not None for c in y.outputs)


@dataclass(frozen=True)
class SmoothedLayers:
    """The normalizations SmoothQuantPass migrated (left in the context for the report)."""

    alpha: float
    layers: tuple[str, ...]
    auto: bool = False


class SmoothQuantPass(Pass):
    """Migrate quantization difficulty from normalization outputs into the following weights (strength
    ``alpha``); with ``auto``, only outputs whose channel maxima show outliers (see the module docstring)."""

    def __init__(self, alpha: float = AUTO_ALPHA, *, auto: bool = False, outlier_ratio: float = OUTLIER_RATIO):
        if not 0 < alpha < 1:
            raise RecipeError(f"SmoothQuant alpha must be in (0, 1), got {alpha}", hint="e.g. 0.5")
        self.alpha = float(alpha)
        self.auto = bool(auto)
        self.outlier_ratio = float(outlier_ratio)

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
        amax = channel_absmax(graph, [n.outputs[0].name for n in candidates], ctx.calibration) if candidates else {}
        names = Names(graph)
        done = []
        for node in candidates:
            a = amax[node.outputs[0].name]
            ratio = float(a.max() / max(float(np.median(a)), 1e-12))
            if self.auto and ratio < self.outlier_ratio:
                ctx.decide(self.name, node.name, "not smoothed",
                           f"no outlier channels (max/median channel |x| {ratio:.1f} < {self.outlier_ratio:g})")
                continue
            s, how = self._migrate(graph, node, a, names)
            done.append(node.name)
            ctx.decide(self.name, node.name, "smoothed", f"alpha {self.alpha}, {how}: max/median channel |x| "
                       f"{ratio:.1f}, scales {s.min():.3g}..{s.max():.3g}")
        ctx.put(SmoothedLayers(self.alpha, tuple(done), self.auto))
        if done:
            graph.cleanup(remove_unused_node_outputs=False).toposort()
        return PassResult(graph, bool(done), {"smoothed": len(done)})

    def _migrate(self, graph: gs.Graph, node: gs.Node, amax: np.ndarray, names: Names) -> tuple[np.ndarray, str]:
        y = node.outputs[0]
        layers = [(c, w) for c in list(y.outputs) if (w := _consumer_weight(c, y)) is not None]
        wmax = np.max([np.abs(w).max(axis=1 - axis) for _, (w, axis) in layers], axis=0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s = np.power(amax.astype(np.float64), self.alpha) / np.power(wmax.astype(np.float64), 1.0 - self.alpha)
        s = np.where(np.isfinite(s) & (s > 0), np.clip(s, 1e-4, 1e4), 1.0).astype(np.float32)
        if _folds(graph, node):
            for i in SMOOTH_PRODUCERS[node.op]:
                if i < len(node.inputs) and node.inputs[i].name:
                    v = constant_value(node.inputs[i]).astype(np.float32)
                    node.inputs[i] = gs.Constant(names.tensor(f"{node.inputs[i].name}_smoothed_{node.name}"),
                                                 (v / s).astype(np.float32))
            source, how = y, "folded into its scale and bias"
        else:
            inv = gs.Constant(names.tensor(f"{y.name}_smooth_inverse"), (1.0 / s).astype(np.float32))
            source = gs.Variable(names.tensor(f"{y.name}_smoothed"), dtype=y.dtype, shape=y.shape)
            graph.nodes.append(gs.Node("Mul", names.node(f"{node.name}_smooth"), inputs=[y, inv], outputs=[source]))
            how = "a Mul for the smoothed layers (the output has other readers)"
        for consumer, (w, axis) in layers:
            shape = (-1, 1) if axis == 0 else (1, -1)
            scaled = (w.astype(np.float32) * s.reshape(shape)).astype(np.float32)
            consumer.inputs[0] = source
            consumer.inputs[1] = gs.Constant(names.tensor(f"{consumer.inputs[1].name}_smoothed_{consumer.name}"), scaled)
        return s, how


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
