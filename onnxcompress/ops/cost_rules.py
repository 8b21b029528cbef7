"""What a node costs to run, as op knowledge: its *cost class* and its *work* (multiply-accumulates, elements).

Two tables, keyed like every op registry:

- :data:`GRAPH_COSTS`: ONNX ops of the graph being quantized. ``rule.work(node, shapes)`` gives the node's cost
  class (``conv``, ``conv_dw``, ``matmul``, ``matmul_act``, ``eltwise``, ``act``, ``softmax``, ``gap``, ``pool``,
  ``concat``) and its :class:`Work` from the shapes of one batch.
- :data:`KERNEL_COSTS`: the op types onnxruntime actually runs (its optimized graph: fused float kernels, int8
  kernels, QuantizeLinear/DequantizeLinear), read from its profiler's events. ``rule.work(event, lookup)`` gives
  the cost class and work of one profiled kernel; ``lookup`` finds the graph node an int8 kernel came from (the
  profiler does not list QLinearConv's weight shape).

A cost model (``quantization.costs``) turns (class, precision, work) into microseconds; its coefficients are fitted
to the profiled events of real models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_shape, is_constant
from onnxcompress.ops.facts import group_of
from onnxcompress.ops.registry import OpRegistry
from onnxcompress.runtime.profiling import KernelEvent

FLOAT, INT8 = "float", "int8"
#: every cost class a node or kernel can fall in
CLASSES = ("conv", "conv_thin", "conv_dw", "matmul", "matmul_act", "eltwise", "act", "softmax", "gap", "pool", "concat")
#: activation-quantization kernels and layout changes: their own classes, no precision. onnxruntime runs float
#: convolutions in a blocked layout (NCHWc: ReorderInput/ReorderOutput) and int8 ones in NHWC (Transpose), so
#: every switch between a float and an int8 convolution region also pays for a layout change
QUANTIZE, DEQUANTIZE, TRANSPOSE, REORDER = "quantize", "dequantize", "transpose", "reorder"

Shapes = dict[str, tuple]
#: (node name without onnxruntime's suffixes) -> the graph node, or None
Lookup = Callable[[str], gs.Node | None]


@dataclass(frozen=True)
class Work:
    """How much a node computes: multiply-accumulates of its main product, and elements it reads or writes."""

    macs: float = 0.0
    elements: float = 0.0


Measured = tuple[str, Work]  # (cost class, work)


def _prod(shape) -> float:
    return float(math.prod(int(d) for d in shape))


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


# --- graph nodes ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphCostRule:
    work: Callable[[gs.Node, Shapes], Measured | None]
    #: the kernels an op without an int8 kernel of its own runs as in int8 (quantization.lower); None: its
    #: int8 cost is its own class's
    int8_kernels: Callable[[gs.Node, Shapes], list[Measured] | None] | None = None


def _shape(shapes: Shapes, t: gs.Tensor) -> tuple | None:
    if isinstance(t, gs.Constant):
        return tuple(t.values.shape)
    s = shapes.get(t.name)
    return s if _known(s) else None


def conv_class(group: int, w_shape: tuple) -> str:
    """Depthwise and grouped convolutions run other kernels than dense ones, and dense ones with few output
    channels or a short reduction (a stem convolution on 3 input channels) run far below the int8 kernels' peak
    (measured: 3x slower than a per-MAC rate fitted on the others predicts): each its own class."""
    if group > 1 and w_shape[1] <= 16:
        return "conv_dw"
    return "conv_thin" if w_shape[0] <= 16 or _prod(w_shape[1:]) <= 32 else "conv"


def _conv_work(node: gs.Node, shapes: Shapes) -> Measured | None:
    w = constant_shape(node.inputs[1])  # shapes only: a lazy weight stays in its file
    y = _shape(shapes, node.outputs[0])
    if w is None or y is None:
        return None
    return conv_class(group_of(node), w), Work(_prod(y) * _prod(w[1:]), _prod(y))


def _matmul_work(node: gs.Node, shapes: Shapes) -> Measured | None:
    a, y = _shape(shapes, node.inputs[0]), _shape(shapes, node.outputs[0])
    if a is None or y is None:
        return None
    k = a[0] if node.op == "Gemm" and int(node.attrs.get("transA", 0)) else a[-1]
    weighted = is_constant(node.inputs[1])
    return ("matmul" if weighted else "matmul_act"), Work(_prod(y) * k, _prod(y))


def _out_elements(cls: str) -> Callable[[gs.Node, Shapes], Measured | None]:
    def work(node: gs.Node, shapes: Shapes) -> Measured | None:
        y = _shape(shapes, node.outputs[0])
        return None if y is None else (cls, Work(0.0, _prod(y)))
    return work


def _in_elements(cls: str) -> Callable[[gs.Node, Shapes], Measured | None]:
    def work(node: gs.Node, shapes: Shapes) -> Measured | None:
        x = _shape(shapes, node.inputs[0])
        return None if x is None else (cls, Work(0.0, _prod(x)))
    return work


GRAPH_COSTS: OpRegistry[GraphCostRule] = OpRegistry("graph cost rules")
GRAPH_COSTS.register("Conv", GraphCostRule(_conv_work))
GRAPH_COSTS.register_all("MatMul Gemm", GraphCostRule(_matmul_work))
GRAPH_COSTS.register_all("Add Mul Sub Div", GraphCostRule(_out_elements("eltwise")))
def _lowered(kernels: int) -> Callable[[gs.Node, Shapes], list[Measured] | None]:
    """``kernels`` int8 elementwise kernels over the output (hard-sigmoid: QLinearAdd; hard-swish: + QLinearMul)."""
    def work(node: gs.Node, shapes: Shapes) -> list[Measured] | None:
        y = _shape(shapes, node.outputs[0])
        return None if y is None else [("eltwise", Work(0.0, _prod(y)))] * kernels
    return work


GRAPH_COSTS.register_all("Sigmoid LeakyRelu Tanh Erf Relu Clip", GraphCostRule(_out_elements("act")))
GRAPH_COSTS.register("HardSigmoid", GraphCostRule(_out_elements("act"), _lowered(1)))
GRAPH_COSTS.register("HardSwish", GraphCostRule(_out_elements("act"), _lowered(2)))
GRAPH_COSTS.register("Softmax", GraphCostRule(_out_elements("softmax")))
GRAPH_COSTS.register("Concat", GraphCostRule(_out_elements("concat")))
GRAPH_COSTS.register("GlobalAveragePool", GraphCostRule(_in_elements("gap")))
GRAPH_COSTS.register_all("AveragePool MaxPool", GraphCostRule(_in_elements("pool")))

#: ops whose kernels care about the memory layout (float NCHWc, int8 NHWC): a float/int8 switch between two of
#: them costs a layout change
LAYOUT_OPS = frozenset({"Conv", "GlobalAveragePool", "AveragePool"})
#: ops onnxruntime runs in whatever layout their input has (its transpose optimizer moves layout changes
#: through them): a layout change is counted between the layout ops on either side
LAYOUT_AGNOSTIC = frozenset({"Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "LeakyRelu", "Tanh", "Add",
                             "Mul", "Sub", "Div", "MaxPool", "Pad", "Identity"})

#: activations onnxruntime fuses into a float Conv (MLAS activations): free after a float Conv, a kernel of their
#: own after an int8 one (Relu and ReLU6-like Clip are absorbed into the int8 output range instead)
CONV_FUSED_ACTIVATIONS = frozenset({"HardSigmoid", "HardSwish", "LeakyRelu", "Sigmoid", "Tanh"})


def graph_work(node: gs.Node, shapes: Shapes, opset: int | None = None) -> Measured | None:
    rule = GRAPH_COSTS.lookup(node.op, node.domain, opset)
    return None if rule is None else rule.work(node, shapes)


def graph_int8_kernels(node: gs.Node, shapes: Shapes, opset: int | None = None) -> list[Measured] | None:
    """The int8 kernels of a node whose int8 form is lowered arithmetic, or None (its own class's int8 kernel)."""
    rule = GRAPH_COSTS.lookup(node.op, node.domain, opset)
    return None if rule is None or rule.int8_kernels is None else rule.int8_kernels(node, shapes)


# --- profiled kernels -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelCostRule:
    precision: str | None  # FLOAT, INT8, or None for Q/DQ
    work: Callable[[KernelEvent, Lookup], Measured | None]


_TOKEN = re.compile(r"(_token_\d+)+$")


def graph_name(event: KernelEvent) -> str:
    """The graph node name an onnxruntime kernel most likely came from (its rewrites add ``_token_N``)."""
    return _TOKEN.sub("", event.node)


def _k_float_conv(ev: KernelEvent, lookup: Lookup) -> Measured | None:
    x, w, y = ev.input_shape(0), ev.input_shape(1), ev.output_shape()
    if not (x and w and y) or len(w) < 3:
        return None
    group = max(1, x[1] // max(w[1], 1))
    return conv_class(group, tuple(w)), Work(_prod(y) * _prod(w[1:]), _prod(y))


def _k_int8_conv(ev: KernelEvent, lookup: Lookup) -> Measured | None:
    node, y = lookup(graph_name(ev)), ev.output_shape()
    w = constant_shape(node.inputs[1]) if node is not None and node.op == "Conv" and len(node.inputs) > 1 else None
    if w is None or not y:
        return None  # the profiler lists QLinearConv's prepacked weight without its shape
    return conv_class(group_of(node), w), Work(_prod(y) * _prod(w[1:]), _prod(y))


def _k_matmul(b_index: int) -> Callable[[KernelEvent, Lookup], Measured | None]:
    def work(ev: KernelEvent, lookup: Lookup) -> Measured | None:
        a, b, y = ev.input_shape(0), ev.input_shape(b_index), ev.output_shape()
        if not (a and y):
            return None
        weighted = ev.op in ("Gemm", "QGemm") or b is None or len(b) <= 2  # prepacked weights are not listed
        return ("matmul" if weighted else "matmul_act"), Work(_prod(y) * a[-1], _prod(y))
    return work


def _k_elements(cls: str, which: str = "out") -> Callable[[KernelEvent, Lookup], Measured | None]:
    def work(ev: KernelEvent, lookup: Lookup) -> Measured | None:
        s = ev.output_shape() if which == "out" else ev.input_shape(0)
        return None if s is None else (cls, Work(0.0, _prod(s)))
    return work


def _k_pool(ev: KernelEvent, lookup: Lookup) -> Measured | None:
    s = ev.input_shape(0)
    return None if s is None else ("pool", Work(0.0, _prod(s)))


KERNEL_COSTS: OpRegistry[KernelCostRule] = OpRegistry("kernel cost rules")
for _domain in ("", "com.microsoft", "com.microsoft.nchwc"):
    KERNEL_COSTS.register("Conv", KernelCostRule(FLOAT, _k_float_conv), domain=_domain)
KERNEL_COSTS.register("FusedConv", KernelCostRule(FLOAT, _k_float_conv), domain="com.microsoft")
KERNEL_COSTS.register_all("QLinearConv NhwcQLinearConv", KernelCostRule(INT8, _k_int8_conv))
KERNEL_COSTS.register_all("MatMul FusedMatMul Gemm", KernelCostRule(FLOAT, _k_matmul(1)))
KERNEL_COSTS.register_all("MatMulIntegerToFloat MatMulInteger DynamicQuantizeMatMul", KernelCostRule(INT8, _k_matmul(1)))
KERNEL_COSTS.register_all("QLinearMatMul QGemm", KernelCostRule(INT8, _k_matmul(3)))
KERNEL_COSTS.register_all("Add Mul Sub Div", KernelCostRule(FLOAT, _k_elements("eltwise")))
KERNEL_COSTS.register_all("QLinearAdd QLinearMul", KernelCostRule(INT8, _k_elements("eltwise")))
KERNEL_COSTS.register_all("Sigmoid HardSigmoid HardSwish LeakyRelu Tanh Erf Gelu BiasGelu FastGelu Relu Clip",
                          KernelCostRule(FLOAT, _k_elements("act")))
KERNEL_COSTS.register_all("QLinearSigmoid QLinearLeakyRelu", KernelCostRule(INT8, _k_elements("act")))
KERNEL_COSTS.register("Softmax", KernelCostRule(FLOAT, _k_elements("softmax")))
KERNEL_COSTS.register("QLinearSoftmax", KernelCostRule(INT8, _k_elements("softmax")))
KERNEL_COSTS.register("Concat", KernelCostRule(FLOAT, _k_elements("concat")))
KERNEL_COSTS.register("QLinearConcat", KernelCostRule(INT8, _k_elements("concat")))
KERNEL_COSTS.register("GlobalAveragePool", KernelCostRule(FLOAT, _k_elements("gap", "in")))
KERNEL_COSTS.register("GlobalAveragePool", KernelCostRule(FLOAT, _k_elements("gap", "in")), domain="com.microsoft.nchwc")
KERNEL_COSTS.register("QLinearGlobalAveragePool", KernelCostRule(INT8, _k_elements("gap", "in")))
KERNEL_COSTS.register_all("AveragePool MaxPool", KernelCostRule(FLOAT, _k_pool))
KERNEL_COSTS.register("QLinearAveragePool", KernelCostRule(INT8, _k_pool))
KERNEL_COSTS.register("Transpose", KernelCostRule(None, _k_elements(TRANSPOSE, "in")))
KERNEL_COSTS.register_all("ReorderInput ReorderOutput", KernelCostRule(None, _k_elements(REORDER, "in")),
                          domain="com.microsoft.nchwc")
KERNEL_COSTS.register("QuantizeLinear", KernelCostRule(None, _k_elements(QUANTIZE, "in")))
KERNEL_COSTS.register("DequantizeLinear", KernelCostRule(None, _k_elements(DEQUANTIZE, "out")))
for _domain in ("com.microsoft",):
    KERNEL_COSTS.register("QuantizeLinear", KernelCostRule(None, _k_elements(QUANTIZE, "in")), domain=_domain)
    KERNEL_COSTS.register("DequantizeLinear", KernelCostRule(None, _k_elements(DEQUANTIZE, "out")), domain=_domain)


def cost_key(cls: str, precision: str | None) -> str:
    """The cost model's key: ``<class>.<precision>``, or the bare class for Q/DQ."""
    return cls if precision is None else f"{cls}.{precision}"


def kernel_work(event: KernelEvent, lookup: Lookup, domain: str = "") -> tuple[str, Work] | None:
    """(cost key, work) of a profiled kernel, or None when it has no rule (data movement, shape ops) or its work
    cannot be read. A MaxPool on uint8 data is an int8 pool."""
    rule = next((r for r in (KERNEL_COSTS.lookup(event.op, d) for d in (domain, "", "com.microsoft",
                                                                        "com.microsoft.nchwc")) if r), None)
    if rule is None:
        return None
    measured = rule.work(event, lookup)
    if measured is None:
        return None
    precision = rule.precision
    if precision == FLOAT and event.inputs and event.inputs[0][0] in ("uint8", "int8"):
        precision = INT8
    return cost_key(measured[0], precision), measured[1]
