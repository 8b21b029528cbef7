"""Facts about layers with weights: where the weight and bias are, which weight axis holds the output and the
input channels, the group count, Gemm's transposes; plus the op types onnxruntime runs as int8 kernels.

Every pass that needs to know "which axis of this weight is the output channel" asks here, so the answer is the
same for pruning, quantization, distillation, bias correction and SmoothQuant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_value
from onnxcompress.ops.registry import OpRegistry


def group_of(node: gs.Node) -> int:
    return int(node.attrs.get("group", 1))


def trans_a(node: gs.Node) -> bool:
    return bool(int(node.attrs.get("transA", 0)))


def trans_b(node: gs.Node) -> bool:
    return bool(int(node.attrs.get("transB", 0)))


@dataclass(frozen=True)
class LayerFacts:
    """A layer with a weight: input indices of activation, weight and bias; the weight's channel axes."""

    activation: int
    weight: int
    bias: int | None
    out_axis: Callable[[gs.Node, int], int | None]  # (node, weight rank) -> weight axis of the output channels
    in_axis: Callable[[gs.Node, int], int | None]  # (node, weight rank) -> weight axis of the input channels


LAYERS: OpRegistry[LayerFacts] = OpRegistry("layer facts")
LAYERS.register("Conv", LayerFacts(0, 1, 2, lambda n, r: 0, lambda n, r: 1))
# ConvTranspose W: (Cin, Cout/group, k...): axis 1 is an output channel only without groups
LAYERS.register("ConvTranspose", LayerFacts(0, 1, 2, lambda n, r: 1 if group_of(n) == 1 else None, lambda n, r: 0))
LAYERS.register("Gemm", LayerFacts(0, 1, 2, lambda n, r: 0 if trans_b(n) else 1, lambda n, r: 1 if trans_b(n) else 0))
LAYERS.register("MatMul", LayerFacts(0, 1, None, lambda n, r: r - 1 if r >= 2 else None,
                                     lambda n, r: r - 2 if r >= 2 else None))

#: ops that hold weights: the denominator of "int8 kernel" coverage
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

#: onnxruntime op types that compute on 8-bit integer data (read from its optimized graph)
INT8_KERNELS = frozenset({
    "QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "ConvInteger",
    "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearSoftmax", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConvTranspose",
    "QAttention", "NhwcQLinearConv", "MatMulNBits",
})


#: int8 kernels that compute a layer with a constant weight -> the input index of that weight
INT8_WEIGHTED_KERNELS = {
    "QLinearConv": 3, "QGemm": 3, "QLinearMatMul": 3, "QLinearConvTranspose": 3, "NhwcQLinearConv": 3,
    "MatMulInteger": 1, "ConvInteger": 1, "MatMulIntegerToFloat": 1, "DynamicQuantizeMatMul": 1, "MatMulNBits": 1,
    "QAttention": 1,
}


#: ops that only appear in a model that is already quantized
QUANTIZED_OPS = INT8_KERNELS | {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "DynamicQuantizeLSTM",
                                "QLinearLeakyRelu", "QLinearReduceMean", "QLinearWhere", "QuantizeWithOrder"}


def quantized_ops(graph) -> list[str]:
    """The op types of ``graph`` (subgraphs included) that show it is already quantized."""
    found: set[str] = set()
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.nodes:
            if node.op in QUANTIZED_OPS:
                found.add(node.op)
            for value in node.attrs.values():
                stack += [v for v in (value if isinstance(value, list) else [value]) if hasattr(v, "nodes")]
    return sorted(found)


def layer_facts(node: gs.Node, opset: int | None = None) -> LayerFacts | None:
    return LAYERS.lookup(node.op, node.domain, opset)


def weight_of(node: gs.Node):
    """The layer's constant weight (numpy) or None (not a layer, or the weight is computed at run time)."""
    facts = layer_facts(node)
    if facts is None or len(node.inputs) <= facts.weight:
        return None
    return constant_value(node.inputs[facts.weight])


def bias_input(node: gs.Node) -> gs.Tensor | None:
    """The layer's bias tensor when present (an omitted optional input counts as absent)."""
    facts = layer_facts(node)
    if facts is None or facts.bias is None or len(node.inputs) <= facts.bias or not node.inputs[facts.bias].name:
        return None
    return node.inputs[facts.bias]


def weight_out_axis(node: gs.Node, rank: int) -> int | None:
    facts = layer_facts(node)
    return None if facts is None else facts.out_axis(node, rank)


def weight_in_axis(node: gs.Node, rank: int) -> int | None:
    facts = layer_facts(node)
    return None if facts is None else facts.in_axis(node, rank)


def consumes(node: gs.Node, weight: gs.Tensor, axis: int) -> bool:
    """True when ``axis`` of ``weight`` is the input (reduction) axis of ``node`` (grouped convs: never)."""
    facts = layer_facts(node)
    if facts is None or (node.op == "MatMul" and node.inputs[1] is not weight):
        return False
    if node.op == "Conv" and group_of(node) != 1:
        return False
    value = constant_value(weight)
    return facts.in_axis(node, 0 if value is None else value.ndim) == axis
