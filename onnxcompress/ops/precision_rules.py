"""Per-op rules of the fp16/bf16 conversion: how a node's float tensors follow its precision, which of them are
fixed to float32 by the op's type constraints, and what the node accumulates over (reduction size, accumulator).

Kinds:
  compute    every float input and output takes the node's precision (elementwise math, pools, comparisons)
  reduction  a compute node that sums over ``reduced(node, shapes)`` elements of its data input; ``accumulate``
             says what it sums (``sum`` of x, ``sumsq`` of x^2, ``exp`` of x - max, each term <= 1)
  dot        a matrix product over ``reduced`` terms (MatMul/Gemm/Conv): GPU kernels accumulate these in fp32
  follow     data movement: exact in any float type; it takes the precision of its float inputs (no casts)
  any        reads any type without converting it (Shape, Size, Cast to a non-float type)
  cast       Cast: its ``to`` follows the node's precision when it casts to float32
An op with no rule stays float32 (recorded); so do If/Loop/Scan and every com.microsoft op without an entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_value
from onnxcompress.ops.registry import OpRegistry

Shape = Sequence[int | str | None]
Shapes = Mapping[str, Shape]
KINDS = ("compute", "reduction", "dot", "follow", "any", "cast")


@dataclass(frozen=True)
class PrecisionRule:
    kind: str
    fp32_inputs: tuple[int, ...] = ()  # inputs whose type is float32 whatever the node's precision (Resize scales)
    fp32_outputs: tuple[int, ...] = ()  # outputs that stay float32 (LayerNormalization's Mean, InvStdDev)
    accumulate: str | None = None  # reductions: sum | sumsq | exp
    reduced: Callable[[gs.Node, Shapes], int | None] | None = None  # elements summed per output value


def _dims(node: gs.Node, shapes: Shapes, index: int = 0) -> list[int] | None:
    t = node.inputs[index] if len(node.inputs) > index else None
    if t is None:
        return None
    shape = shapes.get(t.name) or t.shape
    if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    return [int(d) for d in shape]


def _prod(values) -> int:
    return int(math.prod(values))


def _reduce_axes(node: gs.Node, rank: int) -> list[int] | None:
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1].name:
        value = constant_value(node.inputs[1])
        if value is None:
            return None
        axes = [int(a) for a in value.reshape(-1)]
    if not axes:
        return [] if int(node.attrs.get("noop_with_empty_axes", 0)) else list(range(rank))
    return [a % rank for a in axes]


def reduce_size(node: gs.Node, shapes: Shapes) -> int | None:
    dims = _dims(node, shapes)
    axes = None if dims is None else _reduce_axes(node, len(dims))
    return None if axes is None else _prod(dims[a] for a in axes)


def trailing_from_axis(default_axis: int) -> Callable[[gs.Node, Shapes], int | None]:
    """Elements of the trailing axes from ``axis`` on (LayerNormalization, Softmax before opset 13)."""
    def size(node: gs.Node, shapes: Shapes) -> int | None:
        dims = _dims(node, shapes)
        if dims is None:
            return None
        return _prod(dims[int(node.attrs.get("axis", default_axis)) % len(dims):])
    return size


def one_axis(default_axis: int) -> Callable[[gs.Node, Shapes], int | None]:
    def size(node: gs.Node, shapes: Shapes) -> int | None:
        dims = _dims(node, shapes)
        return None if dims is None else dims[int(node.attrs.get("axis", default_axis)) % len(dims)]
    return size


def spatial(node: gs.Node, shapes: Shapes) -> int | None:
    dims = _dims(node, shapes)
    return None if dims is None else _prod(dims[2:])


def kernel(node: gs.Node, shapes: Shapes) -> int | None:
    k = node.attrs.get("kernel_shape")
    return None if k is None else _prod(k)


def group_norm(node: gs.Node, shapes: Shapes) -> int | None:
    dims = _dims(node, shapes)
    groups = int(node.attrs.get("num_groups", 1))
    return None if dims is None or groups <= 0 else dims[1] // groups * _prod(dims[2:])


def mvn(node: gs.Node, shapes: Shapes) -> int | None:
    dims = _dims(node, shapes)
    axes = node.attrs.get("axes", [0, 2, 3])
    return None if dims is None else _prod(dims[a % len(dims)] for a in axes)


def matmul_k(node: gs.Node, shapes: Shapes) -> int | None:
    dims = _dims(node, shapes)
    return None if not dims else dims[-1]


def gemm_k(node: gs.Node, shapes: Shapes) -> int | None:
    dims = _dims(node, shapes)
    return None if not dims or len(dims) != 2 else dims[0 if int(node.attrs.get("transA", 0)) else 1]


def conv_k(node: gs.Node, shapes: Shapes) -> int | None:
    w = _dims(node, shapes, 1)
    return None if not w else _prod(w[1:])


def conv_transpose_k(node: gs.Node, shapes: Shapes) -> int | None:
    w = _dims(node, shapes, 1)
    return None if not w else w[0] // int(node.attrs.get("group", 1)) * _prod(w[2:])


def cumsum_axis(node: gs.Node, shapes: Shapes) -> int | None:
    dims, axis = _dims(node, shapes), constant_value(node.inputs[1]) if len(node.inputs) > 1 else None
    return None if dims is None or axis is None else dims[int(axis.reshape(-1)[0]) % len(dims)]


#: (domain, op type, opset range) -> rule
RULES: OpRegistry[PrecisionRule] = OpRegistry("precision rules")
RULES.register_all(
    "Add Sub Mul Div Pow Sqrt Exp Log Tanh Sigmoid Erf Relu LeakyRelu Elu Selu Celu Gelu HardSigmoid HardSwish "
    "Softplus Softsign Mish Abs Neg Reciprocal Floor Ceil Round Sign Clip Min Max Mean Sum Where Equal Less Greater "
    "LessOrEqual GreaterOrEqual IsNaN IsInf Sin Cos PRelu ThresholdedRelu MaxPool GlobalMaxPool ReduceMax ReduceMin "
    "ArgMax ArgMin TopK Pad DepthToSpace SpaceToDepth BatchNormalization Trilu Einsum Shrink Hardmax",
    PrecisionRule("compute"))
RULES.register("Resize", PrecisionRule("compute", fp32_inputs=(2,)))  # scales is tensor(float) in every opset
RULES.register_all("Reshape Transpose Flatten Squeeze Unsqueeze Concat Split Slice Gather GatherElements GatherND "
                   "Expand Tile Identity Dropout", PrecisionRule("follow"))
RULES.register_all("Shape Size", PrecisionRule("any"))
RULES.register("Cast", PrecisionRule("cast"))
for _op, _acc in (("ReduceSum", "sum"), ("ReduceMean", "sum"), ("ReduceL1", "sum"), ("ReduceSumSquare", "sumsq"),
                  ("ReduceL2", "sumsq"), ("ReduceLogSumExp", "exp"), ("ReduceLogSum", "sum")):
    RULES.register(_op, PrecisionRule("reduction", accumulate=_acc, reduced=reduce_size))
RULES.register_all("GlobalAveragePool GlobalLpPool", PrecisionRule("reduction", accumulate="sum", reduced=spatial))
RULES.register("AveragePool", PrecisionRule("reduction", accumulate="sum", reduced=kernel))
RULES.register_all("Softmax LogSoftmax", PrecisionRule("reduction", accumulate="exp", reduced=trailing_from_axis(1)),
                   until=13)
RULES.register_all("Softmax LogSoftmax", PrecisionRule("reduction", accumulate="exp", reduced=one_axis(-1)), since=13)
RULES.register("LayerNormalization", PrecisionRule("reduction", fp32_outputs=(1, 2), accumulate="sumsq",
                                                   reduced=trailing_from_axis(-1)))
RULES.register("InstanceNormalization", PrecisionRule("reduction", accumulate="sumsq", reduced=spatial))
RULES.register("GroupNormalization", PrecisionRule("reduction", accumulate="sumsq", reduced=group_norm))
RULES.register("MeanVarianceNormalization", PrecisionRule("reduction", accumulate="sumsq", reduced=mvn))
RULES.register("LpNormalization", PrecisionRule("reduction", accumulate="sumsq", reduced=one_axis(-1)))
RULES.register("CumSum", PrecisionRule("reduction", accumulate="sum", reduced=cumsum_axis))
RULES.register("MatMul", PrecisionRule("dot", reduced=matmul_k))
RULES.register("Gemm", PrecisionRule("dot", reduced=gemm_k))
RULES.register("Conv", PrecisionRule("dot", reduced=conv_k))
RULES.register("ConvTranspose", PrecisionRule("dot", reduced=conv_transpose_k))
# onnxruntime contrib ops with float16 kernels whose float inputs all share the activation type
RULES.register("MatMulNBits", PrecisionRule("dot", reduced=matmul_k), domain="com.microsoft")
RULES.register("GatherBlockQuantized", PrecisionRule("compute"), domain="com.microsoft")


def rule_for(node: gs.Node, opset: int | None = None) -> PrecisionRule | None:
    return RULES.lookup(node.op, node.domain, opset)
