"""Dynamic INT8 quantization of MatMul/Gemm with constant weights: the activation is quantized at run time.

``x -> DynamicQuantizeLinear -> (x_q, x_scale, x_zp)``; ``MatMulInteger(x_q, W_q, x_zp, W_zp) -> Cast(float) ->
Mul(x_scale * W_scale)`` (+ ``Add(bias)`` for a Gemm with C). onnxruntime fuses the chain into
DynamicQuantizeMatMul / MatMulIntegerToFloat. Weights are int8 symmetric, per output column by default; on x86
without VNNI they use 7 bits, as in static quantization (u8s8 products would saturate in int16). No calibration
data is needed; every decision (quantized or kept float, with the reason) is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.errors import UserError
from onnxcompress.ir.edit import Names, name_nodes
from onnxcompress.ir.query import constant_bytes, constant_value, is_constant
from onnxcompress.ops.facts import quantized_ops, trans_a, trans_b
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.quantization.config import QuantizeConfig, matches

log = logging.getLogger(__name__)

DYNAMIC_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class DynamicQuantization:
    """What QuantizeDynamicPass quantized (left in the context for the report)."""

    quantized: tuple[str, ...]
    reduce_range: bool
    bytes_before: int = 0


def why_not_dynamic(node: gs.Node) -> str | None:
    """Why ``node`` cannot be quantized dynamically (None if it can); returns the (K, N) weight otherwise."""
    if node.op not in DYNAMIC_OPS:
        return f"no dynamic quantization rule for {node.op}"
    x = node.inputs[0]
    if is_constant(x) or (x.dtype is not None and np.dtype(x.dtype) != np.float32):
        return "first operand is not a float32 activation"
    w = constant_value(node.inputs[1])
    if w is None or w.ndim != 2 or w.dtype != np.float32:
        return "weight is not a constant 2-D float32 matrix (activation x activation MatMul stays float)"
    if node.op == "Gemm":
        if trans_a(node) or float(node.attrs.get("alpha", 1.0)) != 1.0:
            return "Gemm with transA=1 or alpha != 1"
        if len(node.inputs) > 2 and node.inputs[2].name:
            c = constant_value(node.inputs[2])
            if c is None or float(node.attrs.get("beta", 1.0)) != 1.0:
                return "Gemm bias C is not a constant with beta=1"
    return None


def _selected(node: gs.Node, config: QuantizeConfig) -> str | None:
    if config.include and not any(matches(p, node.name, node.op) for p in config.include):
        return "not matched by include"
    hit = next((p for p in config.exclude if matches(p, node.name, node.op)), None)
    return None if hit is None else f"excluded by '{hit}'"


def weight_scales(w: np.ndarray, per_channel: bool, reduce_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 scale per column or scalar) for a (K, N) matrix, symmetric, zero point 0."""
    qmax = 63.0 if reduce_range else 127.0
    absmax = np.abs(w).max(axis=0) if per_channel else np.array(np.abs(w).max())
    scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
    return q, scale


class QuantizeDynamicPass(Pass):
    """Replace each selected MatMul/Gemm with the dynamic-quantization chain (see the module docstring)."""

    def __init__(self, config: QuantizeConfig | None = None):
        self.config = config if config is not None else QuantizeConfig(mode="dynamic")

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        found = quantized_ops(graph)
        if found:
            raise UserError(f"the model is already quantized (it has {', '.join(found)})",
                            hint="quantize the float model it was made from")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        graph.toposort()
        name_nodes(graph)
        reduce = self.config.resolved_reduce_range()[0]
        bytes_before = constant_bytes(graph)
        names = Names(graph)
        done: list[str] = []
        shared: dict[str, list[gs.Variable]] = {}  # one DynamicQuantizeLinear per activation tensor
        for node in list(graph.nodes):
            if node.op not in DYNAMIC_OPS:
                continue
            reason = why_not_dynamic(node) or _selected(node, self.config)
            if reason is not None:
                ctx.decide(self.name, node.name, "kept float", reason)
                continue
            _replace(graph, node, self.config.per_channel, reduce, shared, names)
            done.append(node.name)
        graph.cleanup().toposort()
        ctx.put(DynamicQuantization(tuple(done), reduce, bytes_before))
        return PassResult(graph, bool(done), {"quantized_nodes": len(done)})


def _replace(graph: gs.Graph, node: gs.Node, per_channel: bool, reduce_range: bool, shared: dict,
             names: Names) -> None:
    base = node.name
    w = constant_value(node.inputs[1]).astype(np.float32)
    if node.op == "Gemm" and trans_b(node):
        w = w.T
    wq, ws = weight_scales(w, per_channel, reduce_range)
    bias = constant_value(node.inputs[2]) if node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2].name else None
    x, y = node.inputs[0], node.outputs[0]

    def var(suffix: str, dtype) -> gs.Variable:
        return gs.Variable(names.tensor(f"{base}_{suffix}"), dtype=dtype)

    def const(suffix: str, value: np.ndarray) -> gs.Constant:
        return gs.Constant(names.tensor(f"{base}_{suffix}"), value)

    new: list[gs.Node] = []
    if x.name not in shared:
        shared[x.name] = [var("x_quantized", np.uint8), var("x_scale", np.float32), var("x_zero_point", np.uint8)]
        new.append(gs.Node("DynamicQuantizeLinear", names.node(f"{base}_DynamicQuantizeLinear"), inputs=[x],
                           outputs=list(shared[x.name])))
    xq, xs, xzp = shared[x.name]
    acc, acc_f, scale = var("int32", np.int32), var("int32_float", np.float32), var("scale", np.float32)
    zp = np.zeros(ws.shape, np.int8)
    out = var("float", np.float32) if bias is not None else y
    new += [
        gs.Node("MatMulInteger", names.node(f"{base}_MatMulInteger"), inputs=[
            xq, const("W_quantized", wq), xzp, const("W_zero_point", zp)], outputs=[acc]),
        gs.Node("Cast", names.node(f"{base}_Cast"), attrs={"to": onnx.TensorProto.FLOAT}, inputs=[acc], outputs=[acc_f]),
        gs.Node("Mul", names.node(f"{base}_scales_Mul"), inputs=[xs, const("W_scale", ws)], outputs=[scale]),
        gs.Node("Mul", names.node(f"{base}_output_Mul"), inputs=[acc_f, scale], outputs=[out]),
    ]
    if bias is not None:
        new.append(gs.Node("Add", names.node(f"{base}_bias_Add"), inputs=[out, const("bias", bias.astype(np.float32))],
                           outputs=[y]))
    node.outputs.clear()
    node.inputs.clear()
    graph.nodes.extend(new)
