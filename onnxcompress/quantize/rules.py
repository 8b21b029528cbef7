"""Per-op quantization rules: which tensors of a node are quantized, in which role, along which axis.

Rules only *declare* :class:`TensorQuantSpec` s; :mod:`onnxcompress.quantize.qdq` calibrates and materializes them.
Kinds:
  compute      activation input(s) + int8 weight (per-channel axis) + int32 bias; output gets its own range
  binary       every input is an activation (Add/Mul -> QLinearAdd/QLinearMul); output gets its own range
  unary        one activation input, own output range (pools -> QLinearAveragePool, Softmax -> QLinearSoftmax, ...)
  concat       inputs and output share one scale (QLinearConcat)
  passthrough  data movement: the output shares the input's scale so ORT drops the Q/DQ pair
  absorb       Relu/Clip: no Q/DQ of their own; the producer's output range is the activation's output (from 0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_value

ROLES = ("activation", "weight", "bias")


@dataclass(frozen=True)
class TensorQuantSpec:
    """One tensor of one node to quantize: input index, role, and the per-channel axis for weights."""

    node: str
    index: int
    tensor: str
    role: str
    axis: int | None = None


@dataclass(frozen=True)
class OpRule:
    kind: str
    cpu_kernel: bool = True  # ORT's CPU EP has an int8 kernel (QDQ selector) for this op
    inputs: tuple[int, ...] = (0,)  # activation inputs (compute/unary/passthrough)


def _conv_axis(node: gs.Node) -> int:
    return 0


def _conv_transpose_axis(node: gs.Node) -> int | None:
    return 1 if int(node.attrs.get("group", 1)) == 1 else None  # W: (Cin, Cout/g, ...)


def _gemm_axis(node: gs.Node) -> int:
    return 0 if int(node.attrs.get("transB", 0)) else 1


def _matmul_axis(node: gs.Node) -> int | None:
    w = constant_value(node.inputs[1])
    return w.ndim - 1 if w is not None and w.ndim >= 2 else None


#: op type -> rule (op knowledge lives here only)
RULES: dict[str, OpRule] = {
    "Conv": OpRule("compute"),
    "ConvTranspose": OpRule("compute", cpu_kernel=False),
    "Gemm": OpRule("compute"),
    "MatMul": OpRule("compute"),
    "Add": OpRule("binary", inputs=(0, 1)),
    "Mul": OpRule("binary", inputs=(0, 1)),
    "Concat": OpRule("concat"),
    "AveragePool": OpRule("unary"),
    "GlobalAveragePool": OpRule("unary"),
    "Softmax": OpRule("unary"),
    "Sigmoid": OpRule("unary"),
    "LeakyRelu": OpRule("unary"),
    "MaxPool": OpRule("passthrough"),
    "Reshape": OpRule("passthrough"),
    "Transpose": OpRule("passthrough"),
    "Flatten": OpRule("passthrough"),
    "Squeeze": OpRule("passthrough"),
    "Unsqueeze": OpRule("passthrough"),
    "Slice": OpRule("passthrough"),
    "Split": OpRule("passthrough"),
    "Gather": OpRule("passthrough"),
    "GatherElements": OpRule("passthrough"),
    "Expand": OpRule("passthrough"),
    "Tile": OpRule("passthrough"),
    "Resize": OpRule("passthrough"),
    "Relu": OpRule("absorb"),
    "Clip": OpRule("absorb"),
}
WEIGHT_AXIS: dict[str, Callable[[gs.Node], int | None]] = {
    "Conv": _conv_axis,
    "ConvTranspose": _conv_transpose_axis,
    "Gemm": _gemm_axis,
    "MatMul": _matmul_axis,
}
#: ops that hold weights: the denominator of the "int8 kernel" coverage
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def rule_for(node: gs.Node) -> OpRule | None:
    if node.domain not in (None, "", "ai.onnx"):
        return None
    return RULES.get(node.op)


def why_not(node: gs.Node, rule: OpRule | None, target: str) -> str | None:
    """Why a node with this rule cannot be quantized (None if it can)."""
    if rule is None:
        return f"no quantization rule for {node.op}"
    if target == "cpu" and not rule.cpu_kernel:
        return f"onnxruntime's CPU provider has no int8 kernel for {node.op}"
    if any(t.dtype is not None and t.dtype.kind != "f" for t in _act_inputs(node, rule)):
        return "activation input is not floating point"
    if rule.kind == "compute":
        return _why_not_compute(node)
    if any(constant_value(t) is not None for t in _act_inputs(node, rule)):
        return "an activation input is a constant (kept float)"
    if rule.kind == "binary" and any(constant_value(t) is not None for t in node.inputs[:2]):
        return "one operand is a constant (kept float)"
    if node.op == "Gather" and constant_value(node.inputs[0]) is not None:
        return "gathers from a constant table (an embedding), not an activation"
    return None


def _why_not_compute(node: gs.Node) -> str | None:
    if node.op == "Gemm":
        if int(node.attrs.get("transA", 0)):
            return "Gemm with transA=1"
        if constant_value(node.inputs[1]) is None:
            return "Gemm weight B is not a constant"
        if len(node.inputs) > 2 and node.inputs[2].name:
            c = constant_value(node.inputs[2])
            n = node.inputs[1].shape[0 if int(node.attrs.get("transB", 0)) else 1]
            if c is None or c.size != n or float(node.attrs.get("beta", 1.0)) != 1.0:
                return "Gemm bias C is not a constant per-output vector with beta=1"
        return None
    if node.op == "MatMul":
        a, b = (constant_value(t) for t in node.inputs[:2])
        if a is not None:
            return "MatMul with a constant first operand"
        if b is not None and b.ndim != 2:
            return f"MatMul weight has rank {b.ndim} (only 2-D weights are quantized)"
        return None
    if constant_value(node.inputs[1]) is None:
        return f"{node.op} weight is not a constant"
    if len(node.inputs) > 2 and node.inputs[2].name and constant_value(node.inputs[2]) is None:
        return f"{node.op} bias is not a constant"
    return None


def _act_inputs(node: gs.Node, rule: OpRule) -> list[gs.Tensor]:
    if rule.kind == "concat":
        return list(node.inputs)
    return [node.inputs[i] for i in rule.inputs if i < len(node.inputs)]


def specs_for(node: gs.Node, rule: OpRule, per_channel: bool) -> list[TensorQuantSpec]:
    """The input tensors of ``node`` to quantize (outputs are decided by the pass from the rule's kind)."""
    if rule.kind == "absorb":
        return []
    if rule.kind == "concat":
        return [TensorQuantSpec(node.name, i, t.name, "activation") for i, t in enumerate(node.inputs)]
    if rule.kind != "compute":
        return [TensorQuantSpec(node.name, i, node.inputs[i].name, "activation") for i in rule.inputs]
    specs = [TensorQuantSpec(node.name, 0, node.inputs[0].name, "activation")]
    w = node.inputs[1]
    if node.op == "MatMul" and constant_value(w) is None:  # activation x activation (attention)
        return specs + [TensorQuantSpec(node.name, 1, w.name, "activation")]
    axis = WEIGHT_AXIS[node.op](node) if per_channel else None
    specs.append(TensorQuantSpec(node.name, 1, w.name, "weight", axis))
    if len(node.inputs) > 2 and node.inputs[2].name:
        specs.append(TensorQuantSpec(node.name, 2, node.inputs[2].name, "bias", 0 if axis is not None else None))
    return specs


def absorbable(node: gs.Node) -> bool:
    """Relu always; Clip when its bounds are constants with min >= 0 (ReLU6-like), so the range starts at 0."""
    if node.op == "Relu":
        return True
    lo = constant_value(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1].name else node.attrs.get("min")
    return lo is not None and float(lo) >= 0.0


def clip_bounds(node: gs.Node) -> tuple[float, float]:
    """The (min, max) an absorbed activation guarantees for its output."""
    if node.op == "Relu":
        return 0.0, float("inf")
    lo = constant_value(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1].name else node.attrs.get("min")
    hi = constant_value(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2].name else node.attrs.get("max")
    return float(lo if lo is not None else 0.0), float(hi) if hi is not None else float("inf")
