"""The precision stage as passes: statistics + plan (read-only), then the conversion, which leaves the typed
:class:`PrecisionResult` and the float32 twin the checks run on (:class:`EmulatedModel`) in the context.

The fidelity check itself runs above the stages, on the validation layer (``validation.precision_check``): the
``convert-precision`` verb and ``optimize`` judge the converted model with the same evaluation as ``validate``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import onnx
import onnx_graphsurgeon as gs

from onnxcompress.errors import UserError
from onnxcompress.ir.edit import name_nodes
from onnxcompress.ir.graph import to_model
from onnxcompress.ir.query import constant_bytes_by_dtype
from onnxcompress.passes.base import Pass, PassContext, PassResult, Sequential
from onnxcompress.precision.config import PrecisionConfig
from onnxcompress.precision.convert import convert, emulate
from onnxcompress.precision.plan import PrecisionPlan, plan_precision
from onnxcompress.precision.result import PrecisionResult
from onnxcompress.precision.stats import GraphStats, collect_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedPrecision:
    """What PlanPrecisionPass leaves for the conversion: the plan, the statistics, the float32 graph's bytes."""

    plan: PrecisionPlan
    stats: GraphStats
    bytes_before: dict[str, int]


@dataclass(frozen=True)
class EmulatedModel:
    """The float32 twin of a conversion: every tensor of the low-precision region rounded to fp16/bf16 at every
    op boundary (what GPU kernels store), float32 arithmetic inside each op. onnxruntime's CPU provider cannot
    show fp16/bf16 numerics itself: it has no bf16 kernels, and it runs fp16 models mostly in float32 (casts
    inserted around ops without fp16 kernels, then merged), so an overflow in fp16 would go unseen there.
    ``reference``: the float32 graph the conversion started from (the stage's input), what the fidelity floor
    compares against, so an earlier stage's error (INT4 weights, pruning) is not charged to the conversion."""

    model: onnx.ModelProto
    reference: onnx.ModelProto


class PlanPrecisionPass(Pass):
    """Collect per-tensor statistics on the calibration data (if any) and decide every node's precision."""

    def __init__(self, config: PrecisionConfig):
        self.config = config

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if any(t.dtype is not None and str(t.dtype) in ("float16", "bfloat16") for t in graph.tensors().values()):
            raise UserError("the model already has fp16/bf16 tensors", hint="convert the float32 model")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        graph.toposort()
        name_nodes(graph)
        cfg = self.config
        stats = collect_stats(graph, ctx.calibration, cfg.format.flush, samples=cfg.calibration_samples,
                              batch_size=cfg.batch_size)
        plan = plan_precision(graph, stats, cfg)
        ops = {n.name: n.op for n in graph.nodes}
        for node, reason in plan.kept.items():
            ctx.decide(self.name, node, "kept float32", reason)
        ctx.put(PlannedPrecision(plan, stats, constant_bytes_by_dtype(graph)))
        return PassResult(graph, False, {"low_precision": len(plan.low), "kept_float32": len(plan.kept),
                                         "blocked_tensors": len(plan.blocked), "ops": len(set(ops.values()))})


class ConvertPrecisionPass(Pass):
    """Apply the plan (precision.convert) and build the float32 twin the checks run on (see EmulatedModel)."""

    def __init__(self, config: PrecisionConfig):
        self.config = config

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        planned = ctx.require(PlannedPrecision, self.name)
        plan, stats, cfg = planned.plan, planned.stats, self.config
        ctx.put(EmulatedModel(to_model(emulate(graph.copy(), plan, stats)), to_model(graph.copy())))
        conv = convert(graph, plan, stats, cfg.keep_io_types)
        ops = {n.name: n.op for n in graph.nodes}
        kept = tuple((n, ops.get(n, "?"), r) for n, r in plan.kept.items())
        warnings = () if stats.source is not None else (
            "no calibration data: activation ranges were not checked (only initializers, reduction sizes and op "
            "rules); pass --calib to check them",)
        seconds = sum(r.seconds for r in ctx.records if r.stage == ctx.stage) if ctx.stage else 0.0
        result = PrecisionResult(cfg, tuple(sorted(plan.low)), kept, dict(plan.blocked), conv.casts_inserted,
                                 conv.casts_removed, conv.initializers_converted, conv.initializers_duplicated,
                                 planned.bytes_before, constant_bytes_by_dtype(graph), stats.source, stats.samples,
                                 seconds, None, warnings)
        ctx.put(result)
        ctx.metadata["onnxcompress.precision"] = json.dumps(
            {"to": cfg.to, "keep_io_types": cfg.keep_io_types, "low_precision_nodes": len(plan.low),
             "kept_float32_nodes": len(plan.kept)}, sort_keys=True)
        return PassResult(graph, bool(plan.low), conv.to_dict())


def precision_passes(config: PrecisionConfig) -> Sequential:
    return Sequential(PlanPrecisionPass(config), ConvertPrecisionPass(config))
