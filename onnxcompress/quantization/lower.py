"""Hard activations in int8 arithmetic: hard-sigmoid and hard-swish without a float round trip.

onnxruntime has no int8 kernel for HardSigmoid or HardSwish, so ``DQ -> HardSwish -> Q`` between two int8
convolutions runs as a DequantizeLinear, a float HardSigmoid, a float Mul and a QuantizeLinear (MobileNetV3 and
PP-LCNet have one after nearly every convolution; measured on PP-LCNet at batch 32, they cost as much as all its
int8 convolutions together). Both are exact in arithmetic onnxruntime does have int8 kernels for:

- ``HardSigmoid(x) = clip(alpha * x + beta, 0, 1)``. With its output quantized on the grid of exactly [0, 1]
  (zero point at the type's minimum, ``scale * (qmax - qmin) = 1``: the rule fixes that range), quantizing
  ``x + beta / alpha`` at ``scale / alpha`` with the same zero point gives the same integers: the grid's
  saturation is the clip. So ``DQ -> HardSigmoid -> Q`` becomes ``DQ -> Add(beta / alpha) -> Q'`` (QLinearAdd),
  and the consumers' DequantizeLinear (``scale``) divides by ``1 / alpha`` for free.
- ``HardSwish(x) = x * HardSigmoid(x)`` with ``alpha = 1/6, beta = 1/2``: the same Add into a saturating grid
  gives ``HardSigmoid(x)`` on [0, 1], then ``Mul(x, .)`` runs as QLinearMul into the calibrated output.

Only nodes the plan quantized are lowered, and only when their Q/DQ are per-tensor 8-bit of one type; anything
else keeps its (correct, slower) float form. Lowered nodes get new names: their original names no longer exist.
"""

from __future__ import annotations

import re

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.ir.edit import Names
from onnxcompress.ir.query import constant_value
from onnxcompress.ir.subgraphs import nodes_with_graphs
from onnxcompress.quantization import params as P

#: op -> (alpha, beta) defaults of clip(alpha * x + beta, 0, 1)
HARD = {"HardSigmoid": (0.2, 0.5), "HardSwish": (1.0 / 6.0, 0.5)}
_TYPES = {np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8"}
_LOWERED = re.compile(r"^(.*)_lowered_(?:add|mul)(?:_\d+)?$")


def lowered_from(node_name: str) -> str | None:
    """The original node a lowered Add/Mul (or onnxruntime's fused kernel of it) was made from, else None."""
    m = _LOWERED.match(node_name)
    return m.group(1) if m else None


def lower_hard_activations(graph: gs.Graph, lowered: set[str], names: Names) -> int:
    """Rewrite every node of ``lowered`` whose Q/DQ allow it; returns how many were rewritten."""
    count = 0
    for node, home in list(nodes_with_graphs(graph)):
        if node.name in lowered and node.op in HARD and _lower(home, node, names):
            count += 1
    if count:
        graph.cleanup(remove_unused_node_outputs=False).toposort()
    return count


def _qparams(q_or_dq: gs.Node) -> tuple[float, int, str] | None:
    """(scale, zero point, dtype) of a per-tensor 8-bit Q/DQ node, else None."""
    if len(q_or_dq.inputs) < 3:
        return None
    scale, zp = constant_value(q_or_dq.inputs[1]), constant_value(q_or_dq.inputs[2])
    if scale is None or zp is None or scale.size != 1 or zp.size != 1 or zp.dtype not in _TYPES:
        return None
    return float(scale.reshape(())), int(zp.reshape(())), _TYPES[zp.dtype]


def _alpha_beta(node: gs.Node) -> tuple[float, float]:
    alpha, beta = HARD[node.op]
    if node.op == "HardSigmoid":
        alpha, beta = float(node.attrs.get("alpha", alpha)), float(node.attrs.get("beta", beta))
    return alpha, beta


def _lower(graph: gs.Graph, node: gs.Node, names: Names) -> bool:
    x, y = node.inputs[0], node.outputs[0]
    dq = x.inputs[0] if x.inputs else None
    readers = list(y.outputs)
    if dq is None or dq.op != "DequantizeLinear" or len(readers) != 1 or readers[0].op != "QuantizeLinear" \
            or any(o is y for o in graph.outputs):
        return False
    xin, out = _qparams(dq), _qparams(readers[0])
    alpha, beta = _alpha_beta(node)
    if xin is None or out is None or xin[2] != out[2] or alpha <= 0 or beta == 0:
        return False
    dtype = out[2]
    lo, hi = P.qrange(dtype)
    if node.op == "HardSigmoid":
        scale, zp, _ = out
        if zp != lo or abs(scale * (hi - lo) - 1.0) > 1e-6:
            return False  # the output grid is not exactly [0, 1]: its saturation is not the clip
        add = _offset_add(graph, node, x, beta / alpha, dtype, names, y)
        readers[0].inputs[1] = gs.Constant(names.tensor(y.name + "_lowered_scale"),
                                           np.array(scale / alpha, np.float32))
    else:
        unit = gs.Variable(names.tensor(y.name + "_hardsigmoid"), dtype=np.float32, shape=y.shape)
        add = _offset_add(graph, node, x, beta / alpha, dtype, names, None)
        _requantize(graph, add.outputs[0], unit, 1.0 / (hi - lo), lo, alpha, dtype, names)
        graph.nodes.append(gs.Node("Mul", names.node(node.name + "_lowered_mul"), inputs=[x, unit], outputs=[y]))
    node.outputs.clear()
    node.inputs.clear()
    graph.nodes.remove(node)
    return True


def _offset_add(graph: gs.Graph, node: gs.Node, x: gs.Tensor, offset: float, dtype: str, names: Names,
                out: gs.Variable | None) -> gs.Node:
    """``x + offset`` with the offset as a one-element int8/uint8 constant behind a DequantizeLinear (the type of
    ``x``'s own quantization: QLinearAdd needs both operands of one type)."""
    lo, hi = P.qrange(dtype)
    q, zp = (hi if offset > 0 else lo), 0
    if dtype == "uint8" and offset < 0:
        q, zp = 0, hi
    scale = abs(offset) / (abs(q - zp))
    base = node.name + "_lowered_offset"
    const = gs.Variable(names.tensor(base), dtype=np.float32, shape=[])
    np_t = P.NP_DTYPES[dtype]
    graph.nodes.append(gs.Node("DequantizeLinear", names.node(base + "_DequantizeLinear"),
                               inputs=[gs.Constant(names.tensor(base + "_quantized"), np.array(q, np_t)),
                                       gs.Constant(names.tensor(base + "_scale"), np.array(scale, np.float32)),
                                       gs.Constant(names.tensor(base + "_zero_point"), np.array(zp, np_t))],
                               outputs=[const]))
    if out is None:
        out = gs.Variable(names.tensor(node.name + "_lowered_sum"), dtype=np.float32, shape=x.shape)
    add = gs.Node("Add", names.node(node.name + "_lowered_add"), inputs=[x, const], outputs=[out])
    graph.nodes.append(add)
    return add


def _requantize(graph: gs.Graph, t: gs.Variable, out: gs.Variable, unit_scale: float, zp: int, alpha: float,
                dtype: str, names: Names) -> None:
    """``out = DQ(Q(t, unit_scale / alpha, zp), unit_scale, zp)``: ``t`` clipped to [0, 1 / alpha] and scaled by
    ``alpha``, on the grid of [0, 1]."""
    np_t = P.NP_DTYPES[dtype]
    zero = gs.Constant(names.tensor(out.name + "_zero_point"), np.array(zp, np_t))
    q = gs.Variable(names.tensor(out.name + "_quantized"), dtype=np_t, shape=t.shape)
    graph.nodes.append(gs.Node("QuantizeLinear", names.node(out.name + "_QuantizeLinear"),
                               inputs=[t, gs.Constant(names.tensor(out.name + "_in_scale"),
                                                      np.array(unit_scale / alpha, np.float32)), zero],
                               outputs=[q]))
    graph.nodes.append(gs.Node("DequantizeLinear", names.node(out.name + "_DequantizeLinear"),
                               inputs=[q, gs.Constant(names.tensor(out.name + "_scale"),
                                                      np.array(unit_scale, np.float32)), zero],
                               outputs=[out]))
