"""Bias correction: fold the mean contribution of removed channels into the next layer's bias.

A removed channel c with calibration mean mu_c used to add W[:, c] * mu_c to every consuming Conv/Gemm output;
dropping it shifts that layer's output by exactly this amount on average. The shift is added to the consumer's
bias (created when missing), which removes the first-order error of the cut (for Conv, up to zero-padding borders).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_value
from onnxcompress.ops.channel_fixups import set_constant
from onnxcompress.ops.channel_rules import WEIGHT
from onnxcompress.ops.facts import consumes, trans_b
from onnxcompress.pruning.groups import Analysis, ChannelGroup, Slot

Deltas = dict[str, np.ndarray]  # consumer output name -> bias shift over its original output channels


def _contribution(node: gs.Node, values: np.ndarray, wpos: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    if node.op == "Conv":
        return values[:, wpos].sum(axis=tuple(range(2, values.ndim))) @ mean
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    if beta == 0:
        return None
    wmat = values.T if trans_b(node) else values
    return alpha / beta * (mean @ wmat[wpos, :])


def _group_deltas(g: ChannelGroup, removed: np.ndarray, tensors: dict[str, gs.Tensor], stats, out: Deltas) -> None:
    for slot in g.slots:
        if g.roles.get(slot) != WEIGHT:
            continue
        w = tensors[slot[0]]
        for node in w.outputs:
            if node.op not in ("Conv", "Gemm") or node.inputs[1] is not w or not consumes(node, w, slot[1]):
                continue
            act: Slot | None = next((s for s in g.activation_slots() if s[0] == node.inputs[0].name), None)
            if act is None or act not in stats:
                continue
            wpos = np.concatenate([g.units[int(u)][slot] for u in removed])
            apos = np.concatenate([g.units[int(u)][act] for u in removed])
            if len(wpos) != len(apos):
                continue
            delta = _contribution(node, np.asarray(constant_value(w), np.float64), wpos, stats[act][2][apos])
            if delta is not None:
                name = node.outputs[0].name
                out[name] = out.get(name, 0) + delta


def plan_corrections(analysis: Analysis, graph: gs.Graph, plan: dict[int, np.ndarray], stats) -> Deltas:
    """Bias shifts per consuming layer, computed on the uncut weights."""
    tensors = graph.tensors()
    out: Deltas = {}
    for g in analysis.groups:
        if len(plan.get(g.id, ())):
            _group_deltas(g, plan[g.id], tensors, stats, out)
    return out


def apply_corrections(graph: gs.Graph, deltas: Deltas, kept: dict[Slot, np.ndarray]) -> list[str]:
    """Add the shifts to the (cut) biases; returns the corrected layers."""
    done = []
    for node in graph.nodes:
        name = node.outputs[0].name if node.outputs else None
        if name not in deltas:
            continue
        delta = deltas[name]
        if (name, 1) in kept:
            delta = delta[kept[(name, 1)]]
        dtype = constant_value(node.inputs[1]).dtype
        bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2].name else None
        if bias is None:
            node.inputs.append(gs.Constant(f"{name}__bias", delta.astype(dtype)))
        else:
            values = constant_value(bias)
            if values is None or values.shape != delta.shape:
                continue
            set_constant(node, 2, (values.astype(np.float64) + delta).astype(dtype))
        done.append(node.name or name)
    return done
