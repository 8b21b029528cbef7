"""quantize_model: pre-process (shapes, BN folding, cleanup), QuantizeQDQPass, ORT kernel verification, report."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import onnx

from onnxcompress.config import config_to_dict
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.ir.io import require_opset, tensor_bytes
from onnxcompress.passes.base import PassContext, Sequential
from onnxcompress.passes.cleanup import CleanupPass, InferShapesPass
from onnxcompress.passes.fuse import FoldBatchNormPass
from onnxcompress.quantize.config import QuantizeConfig
from onnxcompress.quantize.qdq import QuantizeQDQPass

log = logging.getLogger(__name__)


def preprocess_passes(config: QuantizeConfig) -> list:
    from onnxcompress.passes.fold import FoldBiasAddPass, FoldConstantsPass, RewriteHardSwishPass

    passes = [InferShapesPass()]
    if config.fold_constants:
        passes.append(FoldConstantsPass())
    if config.fold_batchnorm:
        passes.append(FoldBatchNormPass())
    if config.fold_constants:  # after BN folding: the Conv+Add patterns only appear once BN is gone
        passes += [RewriteHardSwishPass(), FoldBiasAddPass()]
    passes.append(CleanupPass())
    return passes


def quantize_model(model: onnx.ModelProto, calib, config: QuantizeConfig = QuantizeConfig(), *,
                   ctx: PassContext | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """QDQ model + a JSON-ready report section (see module docstring of onnxcompress.quantize)."""
    from onnxcompress.data.inputs import load_input_data

    require_opset(model, 13, what="static quantization (per-channel QuantizeLinear/DequantizeLinear)")
    ctx = ctx if ctx is not None else PassContext()
    ctx.calibration = load_input_data(calib)
    start = time.perf_counter()
    graph = Sequential(*preprocess_passes(config))(to_graph(model), ctx).graph
    teacher = to_model(graph, like=model) if config.bias_correction else None
    result = QuantizeQDQPass(config)(graph, ctx)  # not wrapped: its user errors (bad data) stay user errors
    qmodel = to_model(result.graph, like=model)
    correction = None
    if teacher is not None:
        from onnxcompress.distill.qbias import correct_quantized_bias

        qmodel, correction = correct_quantized_bias(teacher, qmodel, ctx.calibration, batch_size=config.batch_size,
                                                    samples=config.calibration_samples or 256, ctx=ctx)
    seconds = time.perf_counter() - start
    art = ctx.artifacts["quantize"]
    report = build_report(model, qmodel, art, config, seconds)
    if correction is not None:
        report["bias_correction"] = correction
    if config.verify:
        from onnxcompress.quantize.verify import verify_kernels

        report["verification"] = verify_kernels(qmodel, art["plan"], config.target)
        report["int8_kernels"] = report["verification"]["int8_kernels"]
        report["float_nodes"] = report["verification"]["float_nodes"]
        report["coverage"] = report["verification"]["coverage"]
    return qmodel, report


def build_report(model, qmodel, art: dict, config: QuantizeConfig, seconds: float) -> dict[str, Any]:
    plan, ranges, qparams = art["plan"], art["ranges"], art["qparams"]
    tensors = {}
    for name in plan.activations:
        qp = qparams[name]
        lo, hi = ranges.get(name, (None, None))
        tensors[name] = {
            "range": [_num(lo), _num(hi)] if lo is not None else None,
            "shared_with": plan.groups.find(name) if plan.groups.find(name) != name else None,
            "scale": float(qp.scale), "zero_point": int(qp.zero_point), "dtype": qp.dtype,
        }
    return {
        "config": config_to_dict(config),
        "calibrator": config.calibrator,
        "reduce_range": dict(zip(("enabled", "reason"), config.resolved_reduce_range())),
        "activation_dtype": config.act_dtype,
        "quantized": [{"node": n, "op": plan.ops[n], "kind": k} for n, k in plan.nodes.items()],
        "absorbed": [{"node": n, "into": p} for n, p in plan.absorbed.items()],
        "float_outputs": [{"node": n, "tensor": t} for n, t in plan.float_outputs.items()],
        "skipped": [{"node": n, "reason": r} for n, r in plan.skipped.items()],
        "tensors": tensors,
        "size": {"before_bytes": int(tensor_bytes(model)), "after_bytes": int(tensor_bytes(qmodel)),
                 "model_bytes_before": model.ByteSize(), "model_bytes_after": qmodel.ByteSize()},
        "seconds": round(seconds, 3),
    }


def _num(v) -> float | None:
    return None if v is None else float(np.float32(v))


def quantizable_summary(model: onnx.ModelProto, config: QuantizeConfig = QuantizeConfig()) -> dict[str, Any]:
    """Which nodes the quantizer would touch (static: rules + selection on the pre-processed graph, no data)."""
    from collections import Counter

    from onnxcompress.quantize.plan import ensure_node_names, plan_graph

    graph = Sequential(*preprocess_passes(config))(to_graph(model), PassContext()).graph
    graph.toposort()
    ensure_node_names(graph)
    plan = plan_graph(graph, config)
    by_op = Counter(plan.ops[n] for n, k in plan.nodes.items() if k != "passthrough")
    kept = Counter(r for r in plan.skipped.values())
    summary = (f"{len(plan.nodes)} nodes would be quantized ("
               + ", ".join(f"{op} {c}" for op, c in sorted(by_op.items()))
               + f"), {len(plan.absorbed)} activations absorbed, {len(plan.skipped)} kept float")
    return {
        "summary": summary,
        "target": config.target,
        "quantized_by_op": dict(sorted(by_op.items())),
        "weighted": len(plan.weighted),
        "weighted_quantized": sum(n in plan.nodes for n in plan.weighted),
        "absorbed": dict(plan.absorbed),
        "kept_float": [{"node": n, "reason": r} for n, r in plan.skipped.items()],
        "kept_float_reasons": dict(kept.most_common()),
    }
