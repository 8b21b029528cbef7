"""Fusions: BatchNormalization folded into the preceding Conv, ConvTranspose or Gemm."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.ir.edit import fresh_name
from onnxcompress.ir.query import constant_value, is_constant, is_graph_output
from onnxcompress.passes.base import Pass, PassContext, PassResult

#: op type -> how the per-output-channel BN scale reaches the weight (see _scaled_weight)
FOLDABLE_PRODUCERS = ("Conv", "ConvTranspose", "Gemm")


class FoldBatchNormPass(Pass):
    """Fold inference-mode BatchNormalization into its producer: W' = W * s, b' = (b - mean) * s + beta,
    with s = gamma / sqrt(var + eps). Every BN that stays is recorded with the reason."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        folded = 0
        for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
            producer = bn.inputs[0].inputs[0].name if bn.inputs and bn.inputs[0].inputs else "?"
            reason = self._fold(graph, bn)
            if reason is None:
                folded += 1
                ctx.decide(self.name, bn.name, "folded", f"into {producer}")
            else:
                ctx.decide(self.name, bn.name, "kept", reason)
        if folded:
            graph.cleanup(remove_unused_node_outputs=False).toposort()
        return PassResult(graph, folded > 0, {"folded": folded})

    def _fold(self, graph: gs.Graph, bn: gs.Node) -> str | None:
        reason = _why_not_foldable(graph, bn)
        if reason and reason.startswith("producer is Concat"):
            concat_reason = _why_not_concat_foldable(graph, bn)
            if concat_reason is None:
                return self._fold_through_concat(graph, bn)
            reason += f"; through Concat: {concat_reason}"
        if reason:
            return reason
        scale, shift = _bn_affine(bn)
        _scale_producer(graph, bn.inputs[0].inputs[0], scale, shift)
        _bypass(bn)
        return None

    def _fold_through_concat(self, graph: gs.Graph, bn: gs.Node) -> None:
        """BN after a channel Concat of Conv branches: each branch takes its slice of the BN."""
        scale, shift = _bn_affine(bn)
        start = 0
        for t in bn.inputs[0].inputs[0].inputs:
            producer = t.inputs[0]
            n = _out_channels(producer)
            _scale_producer(graph, producer, scale[start : start + n], shift[start : start + n])
            start += n
        _bypass(bn)
        return None


def _bn_affine(bn: gs.Node) -> tuple[np.ndarray, np.ndarray]:
    """BN as y = x * scale + shift (float64)."""
    gamma, beta, mean, var = (constant_value(t).astype(np.float64) for t in bn.inputs[1:5])
    scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return scale, beta - mean * scale


def _scale_producer(graph: gs.Graph, producer: gs.Node, scale: np.ndarray, shift: np.ndarray) -> None:
    """Make ``producer`` compute (its output) * scale + shift per output channel."""
    weight = constant_value(producer.inputs[1])
    dtype = weight.dtype
    new_w, bias = _scaled_weight(producer, weight.astype(np.float64), scale)
    new_b = bias * scale + shift
    w_name = producer.inputs[1].name
    producer.inputs[1] = gs.Constant(_fresh(graph, w_name), new_w.astype(dtype))
    b_name = producer.inputs[2].name if len(producer.inputs) > 2 and producer.inputs[2].name else w_name + "_bias"
    bias_const = gs.Constant(_fresh(graph, b_name), new_b.astype(dtype))
    if len(producer.inputs) > 2:
        producer.inputs[2] = bias_const
    else:
        producer.inputs.append(bias_const)
    if producer.op == "Gemm":
        producer.attrs["alpha"] = 1.0
        producer.attrs["beta"] = 1.0


def _bypass(bn: gs.Node) -> None:
    """The BN's input producer now writes the BN's output tensor."""
    producer = bn.inputs[0].inputs[0]
    out = bn.outputs[0]
    bn.outputs.clear()
    bn.inputs.clear()  # fully disconnected: cleanup drops it without formatting its weights into a log line
    producer.outputs[0] = out


def _out_channels(node: gs.Node) -> int:
    w = constant_value(node.inputs[1])
    return w.shape[0] if node.op == "Conv" else w.shape[1] * int(node.attrs.get("group", 1))


def _why_not_concat_foldable(graph: gs.Graph, bn: gs.Node) -> str | None:
    concat = bn.inputs[0].inputs[0]
    if int(concat.attrs.get("axis", 0)) != 1:
        return "Concat is not on the channel axis"
    if len(bn.inputs[0].outputs) != 1 or is_graph_output(graph, bn.inputs[0]):
        return "the Concat output has other consumers"
    for t in concat.inputs:
        if len(t.inputs) != 1 or t.inputs[0].op not in ("Conv", "ConvTranspose"):
            return f"branch {t.name} is not produced by a Conv"
        if len(t.outputs) != 1 or is_graph_output(graph, t):
            return f"branch {t.name} has other consumers"
        producer = t.inputs[0]
        if not is_constant(producer.inputs[1]) or (
                len(producer.inputs) > 2 and producer.inputs[2].name and not is_constant(producer.inputs[2])):
            return f"branch {producer.name} has non-constant weights"
    total = sum(_out_channels(t.inputs[0]) for t in concat.inputs)
    if total != constant_value(bn.inputs[1]).shape[0]:
        return "branch channel counts do not add up to the BN's"
    return None


def _why_not_foldable(graph: gs.Graph, bn: gs.Node) -> str | None:
    if len(bn.outputs) != 1 or int(bn.attrs.get("training_mode", 0)):
        return "training-mode BatchNormalization"
    if any(not is_constant(t) for t in bn.inputs[1:5]):
        return "scale/bias/mean/var are not constants"
    x = bn.inputs[0]
    if len(x.inputs) != 1 or x.inputs[0].op not in FOLDABLE_PRODUCERS:
        op = x.inputs[0].op if x.inputs else "a graph input"
        return f"producer is {op}, not one of {', '.join(FOLDABLE_PRODUCERS)}"
    producer = x.inputs[0]
    if len(x.outputs) != 1:
        return f"{producer.name}'s output has other consumers"
    if is_graph_output(graph, x):
        return f"{producer.name}'s output is a graph output"
    if not is_constant(producer.inputs[1]):
        return f"{producer.name}'s weight is not a constant"
    if len(producer.inputs) > 2 and producer.inputs[2].name and not is_constant(producer.inputs[2]):
        return f"{producer.name}'s bias is not a constant"
    if producer.op == "Gemm" and len(producer.inputs) > 2 and producer.inputs[2].name:
        c = constant_value(producer.inputs[2])
        if c.size not in (1, bn.inputs[1].shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
            return f"{producer.name}'s bias C of shape {list(c.shape)} is not per output feature"
    return None


def _scaled_weight(node: gs.Node, w: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weight scaled per output channel, existing bias as float64 per output channel)."""
    cout = scale.shape[0]
    bias = np.zeros(cout)
    if len(node.inputs) > 2 and node.inputs[2].name:
        b = constant_value(node.inputs[2]).astype(np.float64)
        bias = np.broadcast_to(b.reshape(-1) if b.size > 1 else b.reshape(()), (cout,)).copy()
    if node.op == "Conv":
        return w * scale.reshape((-1,) + (1,) * (w.ndim - 1)), bias
    if node.op == "ConvTranspose":  # W: (Cin, Cout/g, k...), output channel = g_idx * Cout/g + j
        groups = int(node.attrs.get("group", 1))
        cin, cpg = w.shape[0], w.shape[1]
        wg = w.reshape((groups, cin // groups, cpg) + w.shape[2:])
        sg = scale.reshape((groups, 1, cpg) + (1,) * (w.ndim - 2))
        return (wg * sg).reshape(w.shape), bias
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    trans_b = int(node.attrs.get("transB", 0))
    w = w * alpha * (scale.reshape(-1, 1) if trans_b else scale.reshape(1, -1))
    return w, bias * beta


def _fresh(graph: gs.Graph, base: str) -> str:
    """A tensor name not used in the graph (the old constant stays until cleanup)."""
    return fresh_name(base + "_bnfold", graph.tensors(), sep="")
