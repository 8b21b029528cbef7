"""Which quantized nodes really run as int8 kernels: read from onnxruntime's optimized graph, not guessed.

A fused int8 node (QLinearConv, QGemm, QLinearMatMul, MatMulIntegerToFloat, QLinearAdd, ...) is traced back to
the original node through the tensor names it produces: the ``<tensor>_quantized`` output of the Q that followed
the node (or the node's own float output for QGemm/MatMulIntegerToFloat without an output Q). One list of int8
kernel op types (``ops.facts.INT8_KERNELS``) serves the quantizer's report and the gate's coverage criterion.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import onnx

from onnxcompress.ops.facts import INT8_KERNELS, INT8_WEIGHTED_KERNELS, WEIGHTED_OPS
from onnxcompress.quantization.lower import lowered_from
from onnxcompress.quantization.plan import Plan
from onnxcompress.runtime.session import SessionOptions, optimized_model

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"_token_\d+$")
TARGET_PROVIDERS = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "tensorrt"}


@dataclass(frozen=True)
class KernelReport:
    """The int8 kernels onnxruntime runs for a quantized model, mapped back to the planned nodes."""

    provider: str
    int8_kernels: tuple[tuple[str, str], ...]  # (node, kernel)
    float_nodes: tuple[tuple[str, str, str], ...]  # (node, op, reason)
    coverage: float | None  # None when nothing could be quantized: "0 of 0" is not 100%
    weighted_int8: int
    weighted_total: int
    kernel_ops: dict[str, int]
    qdq_left: dict[str, int]
    optimized_nodes: int

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "int8_kernels": [{"node": n, "kernel": k} for n, k in self.int8_kernels],
                "float_nodes": [{"node": n, "op": op, "reason": r} for n, op, r in self.float_nodes],
                "coverage": self.coverage, "weighted_int8": self.weighted_int8, "weighted_total": self.weighted_total,
                "kernel_ops": dict(self.kernel_ops), "qdq_left": dict(self.qdq_left),
                "optimized_nodes": self.optimized_nodes}


def optimized(model: onnx.ModelProto, target: str = "cpu") -> onnx.ModelProto:

    return optimized_model(model, SessionOptions(providers=TARGET_PROVIDERS[target], opt_level="all", threads=1))


def verify_kernels(model: onnx.ModelProto, plan: Plan, target: str = "cpu") -> KernelReport:
    """Open ``model`` with onnxruntime (all optimizations, the target's provider) and map int8 kernels back."""
    return kernels_from_optimized(optimized(model, target), plan, target)


def kernels_from_optimized(optimized: onnx.ModelProto, plan: Plan, target: str = "cpu") -> KernelReport:
    owner = {}
    for tensor, node in plan.output_of.items():
        owner[tensor + "_quantized"] = node
        owner[tensor] = node
    int8_nodes: dict[str, str] = {}
    kernel_ops: Counter[str] = Counter()
    every = list(_all_nodes(optimized.graph))
    for n in every:
        if n.op_type not in INT8_KERNELS:
            continue
        kernel_ops[n.op_type] += 1
        base = _TOKEN.sub("", n.name)  # onnxruntime keeps the node's name, adding _token_N when it rewrites it
        base = lowered_from(base) or base
        if base in plan.ops:
            int8_nodes[base] = n.op_type
            continue
        for out in n.output:
            if out in owner:
                int8_nodes[owner[out]] = n.op_type
    qdq_left = Counter(n.op_type for n in every if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    int8 = sorted({k: v for k, v in int8_nodes.items() if k in plan.quantizable}.items())
    float_nodes = sorted((name, op) for name, op in plan.quantizable.items() if name not in int8_nodes)
    weighted = sorted(plan.weighted)
    return KernelReport(
        provider=target, int8_kernels=tuple(int8),
        float_nodes=tuple((n, op, plan.skipped.get(n, "quantized, but onnxruntime did not fuse it"))
                          for n, op in float_nodes),
        coverage=round(len(int8) / len(plan.quantizable), 4) if plan.quantizable else None,
        weighted_int8=sum(n in int8_nodes for n in weighted), weighted_total=len(weighted),
        kernel_ops=dict(sorted(kernel_ops.items())), qdq_left=dict(sorted(qdq_left.items())),
        optimized_nodes=len(every))


def _all_nodes(graph: onnx.GraphProto):
    """The nodes of ``graph`` and of every If/Loop/Scan subgraph in it."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from _all_nodes(sub)


def int8_kernel_ops(model: onnx.ModelProto, target: str = "cpu") -> dict[str, int]:
    """Op types of onnxruntime's optimized graph that compute in int8 (for models without a plan: dynamic)."""
    graph = optimized(model, target).graph
    return dict(sorted(Counter(n.op_type for n in _all_nodes(graph) if n.op_type in INT8_KERNELS).items()))


#: op types that consume weights in onnxruntime's optimized graph (what weight-compressed models run as)
WEIGHT_CONSUMERS = frozenset({"MatMulNBits", "GatherBlockQuantized", "DequantizeLinear", "MatMul", "FusedMatMul",
                              "Gemm", "Conv", "FusedConv", "NhwcFusedConv", "Gather", "GatherElements"})


def weight_kernel_ops(model: onnx.ModelProto, target: str = "cpu") -> dict[str, int]:
    """Op types of onnxruntime's optimized graph that consume weights (MatMulNBits, a DequantizeLinear ORT did
    not fuse, a float MatMul/Conv whose compressed weight it decoded and folded at load time, ...)."""
    graph = optimized(model, target).graph
    return dict(sorted(Counter(n.op_type for n in _all_nodes(graph) if n.op_type in WEIGHT_CONSUMERS).items()))


def weighted_coverage(reference: onnx.ModelProto, candidate: onnx.ModelProto, target: str = "cpu") -> float | None:
    """Int8 kernel coverage without a plan: the fraction of the reference's layers with a constant weight
    (Conv/ConvTranspose/Gemm/MatMul) that run as an int8 kernel with a constant weight in onnxruntime's optimized
    candidate. The same quantity as ``weighted_int8 / weighted_total`` of a :class:`KernelReport`."""
    wanted = _weighted_layers(reference.graph)
    graph = optimized(candidate, target).graph
    constants = _constant_names(graph)
    found = sum(1 for n in graph.node if n.op_type in INT8_WEIGHTED_KERNELS
                and len(n.input) > INT8_WEIGHTED_KERNELS[n.op_type] and n.input[INT8_WEIGHTED_KERNELS[n.op_type]] in constants)
    return None if wanted == 0 else min(1.0, found / wanted)


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer}
    return names | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _weighted_layers(graph: onnx.GraphProto) -> int:
    constants = _constant_names(graph)
    return sum(1 for n in graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in constants)
