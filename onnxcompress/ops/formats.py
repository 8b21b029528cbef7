"""Storage format of every constant tensor: fp32, fp16, bf16, int8, int4, int4-packed (MatMulNBits /
GatherBlockQuantized), codebook indices and codebooks (weight sharing), scales, zero points, ...

A tensor's format is read from its element type and from the op input that consumes it (the table below, keyed
by (domain, op, input index) like every op registry): a uint8 tensor is ``int4-packed`` as MatMulNBits' B with
bits = 4, ``int8`` as DequantizeLinear's input, ``codebook-indices`` when a Cast to int32 unpacks it for a
GatherElements lookup. Bytes are as stored in the file (4-bit types two per byte).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from onnxcompress.ir.external import tensor_nbytes
from onnxcompress.ops.registry import OpRegistry

Classifier = Callable[[onnx.NodeProto, int, int], str | None]  # (consumer, input index, element type) -> format

FLOAT_NAMES = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16",
               onnx.TensorProto.DOUBLE: "fp64"}
INT4 = (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _nbits(node: onnx.NodeProto, index: int, elem: int) -> str | None:
    if index == 1:
        return f"int{_attr(node, 'bits', 4)}-packed"
    return {2: "scales", 3: "zero-points"}.get(index)


def _gather_blocks(node: onnx.NodeProto, index: int, elem: int) -> str | None:
    if index == 0:
        return "int4" if elem in INT4 else f"int{_attr(node, 'bits', 4)}-packed"
    return {2: "scales", 3: "zero-points"}.get(index)


def _dequantize(node: onnx.NodeProto, index: int, elem: int) -> str | None:
    if index == 0:
        return "int4" if elem in INT4 else ("int32" if elem == onnx.TensorProto.INT32 else
                                            ("int16" if elem in (onnx.TensorProto.INT16, onnx.TensorProto.UINT16)
                                             else "int8"))
    return {1: "scales", 2: "zero-points"}.get(index)


def _integer_weight(node: onnx.NodeProto, index: int, elem: int) -> str | None:
    return {1: "int8", 3: "zero-points"}.get(index)


def _codebook(node: onnx.NodeProto, index: int, elem: int) -> str | None:
    return "codebook" if index == 0 and elem in FLOAT_NAMES else None


def _unpack(node: onnx.NodeProto, index: int, elem: int) -> str | None:
    to = _attr(node, "to", 0)
    return "codebook-indices" if index == 0 and elem == onnx.TensorProto.UINT8 and to == onnx.TensorProto.INT32 else None


#: (domain, op) -> classifier of the constants it reads
CONSUMERS: OpRegistry[Classifier] = OpRegistry("weight formats")
CONSUMERS.register("MatMulNBits", _nbits, domain="com.microsoft")
CONSUMERS.register("GatherBlockQuantized", _gather_blocks, domain="com.microsoft")
CONSUMERS.register("DequantizeLinear", _dequantize)
CONSUMERS.register("DequantizeLinear", _dequantize, domain="com.microsoft")
CONSUMERS.register_all("MatMulInteger ConvInteger", _integer_weight)
CONSUMERS.register("GatherElements", _codebook)
CONSUMERS.register("Cast", _unpack)


def _fallback(t: onnx.TensorProto) -> str:
    if t.data_type in FLOAT_NAMES:
        return FLOAT_NAMES[t.data_type]
    if t.data_type in INT4:
        return "int4"
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).name if t.data_type else "undefined"


def weight_formats(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """{format: {tensors, elements, bytes}} over the initializers and Constant-node tensors of the main graph."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    out: dict[str, dict[str, int]] = {}
    for t in tensors:
        fmt = None
        for node, index in consumers.get(t.name, []):
            rule = CONSUMERS.lookup(node.op_type, node.domain)
            fmt = rule(node, index, t.data_type) if rule is not None else None
            if fmt is not None:
                break
        entry = out.setdefault(fmt or _fallback(t), {"tensors": 0, "elements": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["elements"] += int(np.prod(t.dims)) if len(t.dims) else 1
        entry["bytes"] += tensor_nbytes(t)
    return dict(sorted(out.items()))
