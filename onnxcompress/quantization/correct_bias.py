"""Quantization-aware bias correction of a QDQ graph against its float self (a pass).

The reference is the float graph just before Q/DQ insertion (kept by QuantizeQDQPass when bias correction is
asked for). For every quantized Conv/Gemm whose int32 bias sits behind a DequantizeLinear and whose output has a
reference tensor of the same name, the mean per-channel error E[y_teacher - y_quantized] over calibration data is
added to the bias, re-quantized to int32 at its existing scale (s_in * s_w), saturating at the int32 range. The
statistics stream (per-channel sums only). Layers are corrected in waves: a layer only after every quantized
layer upstream of it, so its measured error no longer contains upstream errors that are already fixed
(correcting all layers at once over-corrects deep layers). ``rounds`` repeats the whole sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import RecipeError
from onnxcompress.ir.edit import expose_outputs
from onnxcompress.ir.graph import to_model
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.quantization.insert_qdq import QuantizationPlan
from onnxcompress.runtime.session import SessionOptions, make_session, run

log = logging.getLogger(__name__)

INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class BiasTarget:
    node: str
    output: str
    bias: gs.Constant  # the int32 constant behind the bias DequantizeLinear
    scale: gs.Constant


@dataclass(frozen=True)
class BiasCorrection:
    """Mean |shift| per corrected layer."""

    corrected: tuple[tuple[str, float], ...]
    rounds: int
    waves: int = 0
    samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"corrected": [{"node": n, "mean_abs_shift": v} for n, v in self.corrected], "rounds": self.rounds,
                "waves": self.waves, "samples": self.samples}


def find_targets(graph: gs.Graph, teacher_tensors: set[str], ctx: PassContext, pass_name: str) -> list[BiasTarget]:
    """Quantized layers with an int32 bias behind a DequantizeLinear and a teacher tensor to compare against."""
    targets = []
    for node in graph.nodes:
        if node.op not in ("Conv", "Gemm") or len(node.inputs) < 3 or not node.inputs[2].name:
            continue
        bias = node.inputs[2]
        dq = bias.inputs[0] if bias.inputs else None
        subject = node.name or node.outputs[0].name
        if dq is None or dq.op != "DequantizeLinear" or not isinstance(dq.inputs[0], gs.Constant) \
                or dq.inputs[0].values.dtype != np.int32 or not isinstance(dq.inputs[1], gs.Constant):
            ctx.decide(pass_name, subject, "skipped", "bias is not an int32 DequantizeLinear")
            continue
        if node.outputs[0].name not in teacher_tensors:
            ctx.decide(pass_name, subject, "skipped", f"no teacher tensor named '{node.outputs[0].name}'")
            continue
        targets.append(BiasTarget(subject, node.outputs[0].name, dq.inputs[0], dq.inputs[1]))
    return targets


def _channel_means(model: onnx.ModelProto, names: list[str], feeds_list) -> dict[str, np.ndarray]:

    sess = make_session(expose_outputs(model, names, keep_existing=False),
                        SessionOptions(providers="cpu", opt_level="basic"))
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for feeds in feeds_list:
        outs = run(sess, feeds, names)
        for name in names:
            y, axis = outs[name], (1 if outs[name].ndim > 2 else -1)
            y = np.moveaxis(y, axis, -1).reshape(-1, y.shape[axis]).astype(np.float64)
            sums[name] = sums.get(name, 0) + y.sum(axis=0)
            counts[name] = counts.get(name, 0) + y.shape[0]
    return {k: sums[k] / counts[k] for k in names}


def _waves(graph: gs.Graph, targets: list[BiasTarget]) -> list[list[BiasTarget]]:
    """Group targets by depth: the number of targets on the longest path from the inputs to each (toposorted)."""
    by_output = {t.output: t for t in targets}
    depth_of: dict[str, int] = {}  # tensor -> number of targets upstream (inclusive of its producer)
    for node in graph.nodes:
        d = max((depth_of.get(i.name, 0) for i in node.inputs), default=0)
        for o in node.outputs:
            depth_of[o.name] = d + (1 if o.name in by_output else 0)
    waves: dict[int, list[BiasTarget]] = {}
    for t in targets:
        waves.setdefault(depth_of[t.output], []).append(t)
    return [waves[k] for k in sorted(waves)]


def _shift_bias(target: BiasTarget, delta: np.ndarray) -> None:
    q = target.bias.values.astype(np.float64)
    scale = np.asarray(target.scale.values, dtype=np.float64)
    target.bias.values = np.clip(np.round(q + delta.reshape(q.shape) / scale), INT32.min, INT32.max).astype(np.int32)


class CorrectBiasPass(Pass):
    """Shift each quantized layer's int32 bias so its mean output matches the float graph's (module docstring).
    Runs after QuantizeQDQPass (bias_correction on); leaves a :class:`BiasCorrection` in the context."""

    def __init__(self, samples: int = 256, batch_size: int = 32, rounds: int = 1):
        if rounds < 1:
            raise RecipeError(f"bias-correction rounds must be >= 1, got {rounds}", hint="use 1 or 2")
        self.samples, self.batch_size, self.rounds = int(samples), int(batch_size), int(rounds)

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if ctx.require(QuantizationPlan, self.name).float_model is None:
            raise RecipeError("bias correction runs after QuantizeQDQPass with bias_correction = true",
                              hint="set bias_correction = true in [quantize]")
        if ctx.calibration is None:
            raise RecipeError("bias correction needs calibration data", hint="pass --calib DATA")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:

        teacher = ctx.require(QuantizationPlan, self.name).float_model
        assert teacher is not None and ctx.calibration is not None
        graph.toposort()
        targets = find_targets(graph, {o for n in teacher.graph.node for o in n.output}, ctx, self.name)
        if not targets:
            ctx.put(BiasCorrection((), 0))
            return PassResult(graph, False, {"corrected": 0})
        data = ctx.calibration.batched(self.batch_size).limited(self.samples)
        feeds_list = list(data.bind(model_input_specs(teacher)).feeds())
        ref = _channel_means(teacher, [t.output for t in targets], feeds_list)
        shifts: dict[str, float] = {}
        waves = _waves(graph, targets)
        for _ in range(self.rounds):
            for wave in waves:
                cur = _channel_means(to_model(graph), [t.output for t in wave], feeds_list)
                for t in wave:
                    delta = ref[t.output] - cur[t.output]
                    _shift_bias(t, delta)
                    shifts[t.node] = shifts.get(t.node, 0.0) + float(np.abs(delta).mean())
        for t in targets:
            ctx.decide(self.name, t.node, "corrected", f"mean |shift| {shifts[t.node]:.3g}")
        ctx.put(BiasCorrection(tuple(shifts.items()), self.rounds, len(waves), len(data)))
        return PassResult(graph, True, {"corrected": len(shifts), "waves": len(waves)})
