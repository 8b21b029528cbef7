"""Float16/bfloat16 models are quantized in float32: the graph computes in float32 between its (kept) inputs and
outputs.

QuantizeLinear/DequantizeLinear take a float16 input only from opset 19 (bfloat16 from 19 too), and onnxruntime's
int8 kernels compute and requantize in float32 either way, so a half-precision model is first turned into a float32
one inside: half-precision constants become float32, Casts to half precision become Casts to float32, every graph
input of a half type gets a Cast to float32 and every graph output a Cast back. The model's signature (names,
dtypes, shapes) stays what it was. Nothing else changes; the conversion is exact (half -> float32 is lossless).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ir.edit import Names, replace_all_uses
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.passes.cleanup import InferShapesPass

log = logging.getLogger(__name__)

HALF = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}


def _is_half(dtype) -> bool:
    """float16/bfloat16 (numpy or ml_dtypes); anything else, sequences and maps included, is not."""
    if dtype is None:
        return False
    try:
        name = getattr(dtype, "name", None) or np.dtype(dtype).name
    except TypeError:  # onnx's UNDEFINED (0) for non-tensor values such as ZipMap's seq(map)
        return False
    return name in ("float16", "bfloat16")


def half_tensors(graph: gs.Graph) -> list[str]:
    """Names of the half-precision tensors in the graph (inputs, outputs, constants, Cast results)."""
    found = [n for n, t in graph.tensors().items() if _is_half(t.dtype)]
    found += [n.name for n in graph.nodes if n.op == "Cast" and int(n.attrs.get("to", 0)) in HALF]
    return found


class UpcastHalfPass(Pass):
    """Make a half-precision graph compute in float32 with its signature kept (see module docstring)."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        if not half_tensors(graph):
            return PassResult(graph, False, {"upcast": 0})
        names = Names(graph)
        stats = {"constants": _upcast_constants(graph), "casts": _retarget_casts(graph)}
        stats["inputs"] = _cast_inputs(graph, names)
        stats["outputs"] = _cast_outputs(graph, names)
        if not any(stats.values()):  # already computing in float32 between half-precision inputs and outputs
            return PassResult(graph, False, stats)
        for t in graph.tensors().values():
            if isinstance(t, gs.Variable) and _is_half(t.dtype) and not _is_signature(graph, t):
                t.dtype = np.float32
        InferShapesPass().call(graph, ctx)
        ctx.decide(self.name, "model", "upcast", "half-precision graph computes in float32 for quantization "
                   f"({stats['constants']} constants, {stats['casts']} casts; inputs/outputs keep their types)")
        return PassResult(graph, True, stats)

    def ensures(self, graph: gs.Graph, ctx: PassContext) -> None:
        inner = [n for n, t in graph.tensors().items() if _is_half(t.dtype) and not _is_signature(graph, t)]
        casts = [n for n in graph.nodes if n.op == "Cast" and int(n.attrs.get("to", 0)) in HALF
                 and not any(o in graph.outputs for o in n.outputs)]
        if inner or casts:
            from onnxcompress.errors import InternalError

            raise InternalError(f"half-precision tensors left inside the graph: {(inner + [c.name for c in casts])[:5]}")


def _is_signature(graph: gs.Graph, t: gs.Tensor) -> bool:
    return any(t is x for x in graph.inputs) or any(t is x for x in graph.outputs)


def _upcast_constants(graph: gs.Graph) -> int:
    count = 0
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant) and _is_half(t.values.dtype):
            t.values = np.asarray(t.values, dtype=np.float32)
            count += 1
    for node in graph.nodes:
        value = node.attrs.get("value")
        if node.op in ("Constant", "ConstantOfShape") and isinstance(value, gs.Constant) and _is_half(value.values.dtype):
            value.values = np.asarray(value.values, dtype=np.float32)
            count += 1
    return count


def _retarget_casts(graph: gs.Graph) -> int:
    count = 0
    for node in graph.nodes:
        if node.op == "Cast" and int(node.attrs.get("to", 0)) in HALF and not any(
                _is_signature(graph, o) for o in node.outputs):
            node.attrs["to"] = onnx.TensorProto.FLOAT
            for o in node.outputs:
                o.dtype = np.float32
            count += 1
    return count


def _widened(t: gs.Tensor) -> bool:
    """Every consumer of ``t`` already casts it to float32."""
    return bool(t.outputs) and all(c.op == "Cast" and int(c.attrs.get("to", 0)) == onnx.TensorProto.FLOAT
                                   for c in t.outputs)


def _cast_inputs(graph: gs.Graph, names: Names) -> int:
    count = 0
    for x in [t for t in graph.inputs if _is_half(t.dtype) and not _widened(t)]:
        wide = gs.Variable(names.tensor(x.name + "_float32"), dtype=np.float32, shape=x.shape)
        replace_all_uses(x, wide)
        graph.nodes.append(gs.Node("Cast", names.node(x.name + "_to_float32"), attrs={"to": onnx.TensorProto.FLOAT},
                                   inputs=[x], outputs=[wide]))
        count += 1
    return count


def _cast_outputs(graph: gs.Graph, names: Names) -> int:
    count = 0
    for y in [t for t in graph.outputs if _is_half(t.dtype)]:
        producer = y.inputs[0] if y.inputs else None
        if producer is not None and producer.op == "Cast" and producer.outputs[0] is y:
            continue  # the output already comes out of a Cast to its type
        wide = gs.Variable(names.tensor(y.name + "_float32"), dtype=np.float32, shape=y.shape)
        if producer is not None:
            producer.outputs[producer.outputs.index(y)] = wide
        replace_all_uses(y, wide)
        to = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(y.dtype))
        graph.nodes.append(gs.Node("Cast", names.node(y.name + "_to_half"), attrs={"to": to}, inputs=[wide],
                                   outputs=[y]))
        count += 1
    graph.toposort()
    return count
