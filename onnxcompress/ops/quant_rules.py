"""Per-op quantization rules: which tensors of a node are quantized, in which role, along which axis.

Rules only *declare* :class:`TensorQuantSpec` s; :mod:`onnxcompress.quantization.insert_qdq` calibrates and
materializes them. The table is keyed by (domain, op type, opset range) like every op registry.
Kinds:
  compute      activation input(s) + int8 weight (per-channel axis) + int32 bias; output gets its own range
  binary       every input is an activation (Add/Mul -> QLinearAdd/QLinearMul); output gets its own range
  unary        one activation input, own output range (pools -> QLinearAveragePool, Softmax -> QLinearSoftmax, ...);
               a *lowered* unary op has no int8 kernel of its own: ``quantization.lower`` rewrites its
               DQ -> op -> Q into int8 arithmetic onnxruntime has kernels for (hard-sigmoid: QLinearAdd into a
               saturating range; hard-swish: QLinearAdd + QLinearMul)
  concat       inputs and output share one scale (QLinearConcat)
  passthrough  data movement: the output shares the input's scale so ORT drops the Q/DQ pair
  absorb       Relu/Clip: no Q/DQ of their own; the producer's output range is the activation's output (from 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_shape, constant_value, is_constant
from onnxcompress.ops.facts import WEIGHTED_OPS, trans_a, trans_b, weight_out_axis
from onnxcompress.ops.registry import OpRegistry

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
    lowered: bool = False  # int8 by quantization.lower's rewrite, not by a QDQ fusion of onnxruntime
    output_range: tuple[float, float] | None = None  # the output's range is fixed by the op, not calibrated


#: (domain, op type, opset range) -> rule (op knowledge lives here only)
RULES: OpRegistry[OpRule] = OpRegistry("quantization rules")
RULES.register("Conv", OpRule("compute"))
RULES.register("ConvTranspose", OpRule("compute", cpu_kernel=False))
RULES.register_all("Gemm MatMul", OpRule("compute"))
RULES.register_all("Add Mul", OpRule("binary", inputs=(0, 1)))
RULES.register("Concat", OpRule("concat"))
RULES.register_all("AveragePool GlobalAveragePool Softmax Sigmoid LeakyRelu", OpRule("unary"))
#: clip(alpha * x + beta, 0, 1): the output grid is exactly [0, 1], so the quantizer's saturation is the clip
RULES.register("HardSigmoid", OpRule("unary", lowered=True, output_range=(0.0, 1.0)))
RULES.register("HardSwish", OpRule("unary", lowered=True), since=14)
RULES.register_all("MaxPool Reshape Transpose Flatten Squeeze Unsqueeze Slice Split Gather GatherElements Expand "
                   "Tile Resize", OpRule("passthrough"))
RULES.register_all("Relu Clip", OpRule("absorb"))

__all__ = ["ROLES", "TensorQuantSpec", "OpRule", "RULES", "WEIGHTED_OPS", "rule_for", "why_not", "specs_for",
           "absorbable", "clip_bounds", "weight_axis"]


def weight_axis(node: gs.Node) -> int | None:
    """The per-channel axis of a compute node's weight: its output-channel axis (None: per-tensor only)."""
    w = constant_shape(node.inputs[1])
    return weight_out_axis(node, len(w) if w is not None else 0)


def rule_for(node: gs.Node, opset: int | None = None) -> OpRule | None:
    return RULES.lookup(node.op, node.domain, opset)


def why_not(node: gs.Node, rule: OpRule | None, target: str) -> str | None:
    """Why a node with this rule cannot be quantized (None if it can)."""
    if rule is None:
        return f"no quantization rule for {node.op}"
    if target == "cpu" and not rule.cpu_kernel:
        return f"onnxruntime's CPU provider has no int8 kernel for {node.op}"
    if rule.lowered and target != "cpu":
        return f"{node.op} runs int8 only as the CPU provider's lowered arithmetic (QLinearAdd/QLinearMul)"
    if any(t.dtype is not None and t.dtype.kind != "f" for t in _act_inputs(node, rule)):
        return "activation input is not floating point"
    if rule.kind == "compute":
        return _why_not_compute(node)
    if any(is_constant(t) for t in _act_inputs(node, rule)):
        return "an activation input is a constant (kept float)"
    if rule.kind == "binary" and any(is_constant(t) for t in node.inputs[:2]):
        return "one operand is a constant (kept float)"
    if node.op == "Gather" and is_constant(node.inputs[0]):
        return "gathers from a constant table (an embedding), not an activation"
    return None


def _why_not_compute(node: gs.Node) -> str | None:
    if node.op == "Gemm":
        if trans_a(node):
            return "Gemm with transA=1"
        if not is_constant(node.inputs[1]):
            return "Gemm weight B is not a constant"
        if len(node.inputs) > 2 and node.inputs[2].name:
            c = constant_value(node.inputs[2])
            n = node.inputs[1].shape[0 if trans_b(node) else 1]
            if c is None or c.size != n or float(node.attrs.get("beta", 1.0)) != 1.0:
                return "Gemm bias C is not a constant per-output vector with beta=1"
        return None
    if node.op == "MatMul":
        a, b = (constant_shape(t) for t in node.inputs[:2])
        if a is not None:
            return "MatMul with a constant first operand"
        if b is not None and len(b) != 2:
            return f"MatMul weight has rank {len(b)} (only 2-D weights are quantized)"
        return None
    if not is_constant(node.inputs[1]):
        return f"{node.op} weight is not a constant"
    if len(node.inputs) > 2 and node.inputs[2].name and not is_constant(node.inputs[2]):
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
    if node.op == "MatMul" and not is_constant(w):  # activation x activation (attention)
        return specs + [TensorQuantSpec(node.name, 1, w.name, "activation")]
    axis = weight_axis(node) if per_channel else None
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
