"""Which quantized nodes really run as int8 kernels: read from onnxruntime's optimized graph, not guessed.

A fused int8 node (QLinearConv, QGemm, QLinearMatMul, MatMulIntegerToFloat, QLinearAdd, ...) is traced back to
the original node through the tensor names it produces: the ``<tensor>_quantized`` output of the Q that followed
the node (or the node's own float output for QGemm/MatMulIntegerToFloat without an output Q).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import onnx

from onnxcompress.quantize.plan import Plan

log = logging.getLogger(__name__)

#: onnxruntime op types that compute on int8/uint8 data
INT8_KERNELS = frozenset({
    "QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "ConvInteger",
    "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearSoftmax", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConvTranspose",
    "QAttention", "NhwcQLinearConv",
})
_TOKEN = re.compile(r"_token_\d+$")
TARGET_PROVIDERS = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "tensorrt"}


def verify_kernels(model: onnx.ModelProto, plan: Plan, target: str = "cpu") -> dict[str, Any]:
    """Open ``model`` with onnxruntime (all optimizations, the target's provider) and map int8 kernels back."""
    from onnxcompress.runtime.session import SessionOptions, optimized_model

    optimized = optimized_model(model, SessionOptions(providers=TARGET_PROVIDERS[target], opt_level="all", threads=1))
    return kernels_from_optimized(optimized, plan, target)


def kernels_from_optimized(optimized: onnx.ModelProto, plan: Plan, target: str = "cpu") -> dict[str, Any]:
    owner = {}
    for tensor, node in plan.output_of.items():
        owner[tensor + "_quantized"] = node
        owner[tensor] = node
    int8_nodes: dict[str, str] = {}
    kernel_ops = Counter()
    for n in optimized.graph.node:
        if n.op_type not in INT8_KERNELS:
            continue
        kernel_ops[n.op_type] += 1
        base = _TOKEN.sub("", n.name)  # onnxruntime keeps the node's name, adding _token_N when it rewrites it
        if base in plan.ops:
            int8_nodes[base] = n.op_type
            continue
        for out in n.output:
            if out in owner:
                int8_nodes[owner[out]] = n.op_type
    qdq_left = Counter(n.op_type for n in optimized.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    int8 = sorted({k: v for k, v in int8_nodes.items() if k in plan.quantizable}.items())
    float_nodes = sorted((name, op) for name, op in plan.quantizable.items() if name not in int8_nodes)
    weighted = sorted(plan.weighted)
    return {
        "provider": target,
        "int8_kernels": [{"node": n, "kernel": k} for n, k in int8],
        "float_nodes": [{"node": n, "op": op, "reason": plan.skipped.get(n, "quantized, but onnxruntime did not fuse it")}
                        for n, op in float_nodes],
        "coverage": round(len(int8) / len(plan.quantizable), 4) if plan.quantizable else 1.0,
        "weighted_int8": sum(n in int8_nodes for n in weighted),
        "weighted_total": len(weighted),
        "kernel_ops": dict(sorted(kernel_ops.items())),
        "qdq_left": dict(sorted(qdq_left.items())),
        "optimized_nodes": len(optimized.graph.node),
    }
