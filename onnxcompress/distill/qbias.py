"""Quantization-aware bias correction of a QDQ model against a float teacher.

For every quantized Conv/Gemm/MatMul-with-bias whose output has a teacher counterpart of the same name, the mean
per-channel error E[y_teacher - y_quantized] over calibration data is added to the layer's bias, which is then
re-quantized to int32 at its existing scale (s_in * s_w), saturating at the int32 range. The statistics stream
(per-channel sums only). Several rounds approach the sequential correction in which each layer sees the already
corrected layers before it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxcompress.errors import RecipeError
from onnxcompress.ir.graph import with_outputs
from onnxcompress.ir.query import initializer_map
from onnxcompress.passes.base import PassContext

log = logging.getLogger(__name__)

INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class BiasTarget:
    node: str
    output: str
    bias_init: str  # the int32 initializer behind the bias DequantizeLinear
    scale_init: str
    axis: int  # channel axis of the output


def find_targets(qmodel: onnx.ModelProto, teacher_tensors: set[str], ctx: PassContext) -> list[BiasTarget]:
    """Quantized layers with an int32 bias behind a DequantizeLinear and a teacher tensor to compare against."""
    inits = initializer_map(qmodel)
    producers = {o: n for n in qmodel.graph.node for o in n.output}
    targets = []
    for node in qmodel.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
            continue
        dq = producers.get(node.input[2])
        subject = node.name or node.output[0]
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits \
                or inits[dq.input[0]].data_type != onnx.TensorProto.INT32:
            ctx.decide("bias_correction", subject, "skipped", "bias is not an int32 DequantizeLinear")
            continue
        if node.output[0] not in teacher_tensors:
            ctx.decide("bias_correction", subject, "skipped", f"no teacher tensor named '{node.output[0]}'")
            continue
        axis = 1 if node.op_type == "Conv" else -1
        targets.append(BiasTarget(subject, node.output[0], dq.input[0], dq.input[1], axis))
    return targets


def _channel_means(model: onnx.ModelProto, names: list[str], feeds_list, kept) -> dict[str, np.ndarray]:
    from onnxcompress.runtime.session import SessionOptions, make_session, run

    sess = make_session(with_outputs(model, names, keep_existing=False), SessionOptions(providers="cpu", opt_level="basic"))
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for feeds in feeds_list:
        outs = run(sess, feeds, names)
        for name in names:
            y, axis = outs[name], (1 if outs[name].ndim > 2 else -1)
            if kept and name in kept:
                y = np.take(y, kept[name], axis=axis)
            y = np.moveaxis(y, axis, -1).reshape(-1, y.shape[axis]).astype(np.float64)
            sums[name] = sums.get(name, 0) + y.sum(axis=0)
            counts[name] = counts.get(name, 0) + y.shape[0]
    return {k: sums[k] / counts[k] for k in names}


def correct_quantized_bias(teacher: onnx.ModelProto, qmodel: onnx.ModelProto, calib, *, rounds: int = 1,
                           samples: int = 256, batch_size: int = 32, kept: dict[str, list[int]] | None = None,
                           ctx: PassContext | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """A copy of ``qmodel`` with bias-corrected int32 biases; report with the mean |shift| per layer.

    Layers are corrected in waves: a layer is corrected only after every quantized layer upstream of it, so its
    measured error no longer contains upstream errors that are already fixed (correcting all layers at once
    over-corrects deep layers). ``rounds`` repeats the whole sweep."""
    from onnxcompress.data.inputs import load_input_data, model_input_specs

    if rounds < 1:
        raise RecipeError(f"bias-correction rounds must be >= 1, got {rounds}", hint="use 1 or 2")
    ctx = ctx if ctx is not None else PassContext()
    out = onnx.ModelProto()
    out.CopyFrom(qmodel)
    teacher_tensors = {o for n in teacher.graph.node for o in n.output}
    targets = find_targets(out, teacher_tensors, ctx)
    if not targets:
        return out, {"corrected": [], "rounds": 0}
    data = load_input_data(calib).batched(batch_size).limited(samples)
    feeds_list = list(data.bind(model_input_specs(out)).feeds())
    names = [t.output for t in targets]
    ref = _channel_means(teacher, names, feeds_list, kept)
    shifts: dict[str, float] = {}
    waves = _waves(out, targets)
    for _ in range(rounds):
        for wave in waves:
            cur = _channel_means(out, [t.output for t in wave], feeds_list, None)
            inits = initializer_map(out)
            for t in wave:
                delta = ref[t.output] - cur[t.output]
                _shift_bias(inits[t.bias_init], inits[t.scale_init], delta)
                shifts[t.node] = shifts.get(t.node, 0.0) + float(np.abs(delta).mean())
    for t in targets:
        ctx.decide("bias_correction", t.node, "corrected", f"mean |shift| {shifts[t.node]:.3g}")
    return out, {"corrected": [{"node": k, "mean_abs_shift": v} for k, v in shifts.items()], "rounds": rounds,
                 "waves": len(waves), "samples": len(data)}


def _waves(model: onnx.ModelProto, targets: list[BiasTarget]) -> list[list[BiasTarget]]:
    """Group targets by depth: the number of targets on the longest path from the inputs to each (toposorted)."""
    by_output = {t.output: t for t in targets}
    depth_of: dict[str, int] = {}  # tensor -> number of targets upstream (inclusive of its producer)
    for node in model.graph.node:
        d = max((depth_of.get(i, 0) for i in node.input), default=0)
        for o in node.output:
            depth_of[o] = d + (1 if o in by_output else 0)
    waves: dict[int, list[BiasTarget]] = {}
    for t in targets:
        waves.setdefault(depth_of[t.output], []).append(t)
    return [waves[k] for k in sorted(waves)]


def _shift_bias(bias_t: onnx.TensorProto, scale_t: onnx.TensorProto, delta: np.ndarray) -> None:
    q = onnx.numpy_helper.to_array(bias_t).astype(np.float64)
    scale = onnx.numpy_helper.to_array(scale_t).astype(np.float64)
    new = np.clip(np.round(q + delta.reshape(q.shape) / scale), INT32.min, INT32.max).astype(np.int32)
    bias_t.CopyFrom(onnx.numpy_helper.from_array(new, bias_t.name))
