"""Building the quantized model of one trial: a *choice* maps node names to a higher precision ("int16": the
node's activation inputs and output in 16 bits, weights int8; "int8": weight_only mode, the node's weight in 8
instead of ``weight_bits`` bits; "float": the node is excluded), every other quantizable node stays at the
mode's base precision (INT8; weight_only: ``weight_bits``).

Weight modes share one :class:`MomentsCache` across trials: the calibration moments (X^T X of every layer input)
are measured once, and a layer compressed with the same settings is reused, so a trial only re-assembles the
graph.

Calibration runs once per tensor: ranges are cached, and a trial's config fixes every range through
``TensorOverride(range=...)``, so the quantizer materializes without re-running the calibration data (a trial that
needs a tensor no earlier plan calibrated measures just that tensor). Static results are byte-identical to a plain
quantization stage with the same selection, because the cached ranges are the ones it would measure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import onnx

from onnxcompress.data.inputs import load_input_data
from onnxcompress.ir.edit import name_nodes
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.passes.base import PassContext, Sequential, apply_to_model
from onnxcompress.passes.progress import NO_PROGRESS, Progress
from onnxcompress.quantization.compressed import WeightCompression
from onnxcompress.quantization.config import WEIGHT_MODES, QuantizeConfig, TensorOverride
from onnxcompress.quantization.dynamic import why_not_dynamic
from onnxcompress.quantization.fuse_transformer import FuseTransformerPass
from onnxcompress.quantization.hessian import MomentsCache, collect_moments
from onnxcompress.quantization.insert_qdq import CalibrationWarnings, calibrate
from onnxcompress.quantization.plan import Plan, plan_graph
from onnxcompress.quantization.result import QuantizeResult
from onnxcompress.quantization.smooth import SmoothedLayers
from onnxcompress.quantization.stage import quantize_passes, rewrite_passes, smooth_pass
from onnxcompress.quantization.weight_only import Linear, linear_of

log = logging.getLogger(__name__)

Choice = dict[str, str]


def choice_key(choice: Choice) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(choice.items()))


def exact(name: str) -> str:
    """A selection pattern that matches exactly one node name (never an op type)."""
    return "re:^" + re.escape(name) + "$"


class TrialBuilder:
    """Prepares the float graph once (SmoothQuant, rewrites, node names), then builds the quantized model of any
    choice. ``model`` is the stage's input: the pipeline has already pre-processed it."""

    def __init__(self, model: onnx.ModelProto, calib, config: QuantizeConfig, progress: Progress | None = None):

        self.mode = config.mode
        self.progress = progress or NO_PROGRESS  # calibration shows its batches here
        self.calib = load_input_data(calib) if calib is not None else None
        smooth = smooth_pass(config)
        prepare = [FuseTransformerPass(config.transformer_fusion)] if config.transformer_fusion != "off" else []
        prepare += [smooth] if smooth is not None else []
        prep = PassContext(calibration=self.calib)
        graph = Sequential(*prepare, *rewrite_passes(config))(to_graph(model), prep).graph
        self.smoothed = prep.get(SmoothedLayers)  # reported by every build: the builds start from the smoothed graph
        self.prepared_by = {"rewrites": config.rewrites, "smooth_quant": config.smooth_quant,
                            "transformer_fusion": config.transformer_fusion}  # what the result's config says
        graph.toposort()
        name_nodes(graph)
        self.model = to_model(graph, like=model)  # prepared, every node named: the names choices refer to
        self.config = replace(config, verify=False, rewrites=False, smooth_quant="off", transformer_fusion="off")
        self.calibrator = config.calibrator  # static builds: the calibrator whose ranges a trial uses
        self._ranges: dict[str, dict[str, tuple[float, float]]] = {}  # calibrator -> tensor -> range
        self.warnings: tuple[str, ...] = ()  # calibration-data warnings, carried into every build's result
        self.cache = MomentsCache()  # weight modes: moments and compressed layers shared by every trial
        self._baseline: WeightCompression | None = None

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """The cached ranges of the current calibrator."""
        return self._ranges.setdefault(self.calibrator, {})

    # --- planning ---------------------------------------------------------------------------------------------
    def _graph(self):
        graph = to_graph(self.model)
        graph.toposort()
        name_nodes(graph)
        return graph

    def plan(self, config: QuantizeConfig | None = None):

        return plan_graph(self._graph(), config or self.config)

    def units(self, mode: str | None = None) -> dict[str, str]:
        """Quantizable nodes of the full INT8 plan (name -> op type), in graph order: the search's units."""
        if (mode or self.mode) in WEIGHT_MODES:
            return {layer.node: layer.op for layer in self.weight_baseline().layers}
        if (mode or self.mode) == "dynamic":

            return {n.name: n.op for n in self._graph().nodes if n.op in ("MatMul", "Gemm") and why_not_dynamic(n) is None}
        plan = self.plan(replace(self.config, mode="static"))
        return {n: plan.ops[n] for n in plan.nodes if plan.nodes[n] != "passthrough"}

    # --- building ---------------------------------------------------------------------------------------------
    def static_config(self, choice: Choice) -> QuantizeConfig:
        base = replace(self.config, mode="static", calibrator=self.calibrator)
        floats = tuple(exact(n) for n, p in sorted(choice.items()) if p == "float")
        cfg = replace(base, exclude=base.exclude + floats)
        plan = self.plan(cfg)
        int16 = set()
        for node, precision in choice.items():
            if precision == "int16" and node in plan.nodes:
                int16.update(s.tensor for s in plan.specs if s.node == node and s.role == "activation")
                int16.update(t for t, owner in plan.output_of.items() if owner == node)
        self._ensure_ranges(plan)
        overrides = dict(base.overrides)
        for tensor in plan.calibrated:
            ov = overrides.get(tensor, TensorOverride())
            dtype = "int16" if tensor in int16 else ov.dtype
            # no cached range: a tensor the calibration data never reaches (an If branch not taken); the
            # quantizer measures it itself and keeps it float with its reason, as a plain quantization does
            overrides[tensor] = replace(ov, dtype=dtype, range=ov.range or self.ranges.get(tensor))
        for tensor in int16 - set(plan.calibrated):  # pass-through members share their group's range
            overrides[tensor] = replace(overrides.get(tensor, TensorOverride()), dtype="int16")
        return replace(cfg, overrides=overrides)

    def weight_config(self, choice: Choice) -> QuantizeConfig:
        """Weight modes: "float" nodes excluded, "int8" nodes with 8-bit weights (weight_only)."""
        floats = tuple(exact(n) for n, p in sorted(choice.items()) if p == "float")
        int8 = {exact(n): 8 for n, p in sorted(choice.items()) if p == "int8"}
        return replace(self.config, exclude=self.config.exclude + floats, node_bits={**int8, **self.config.node_bits})

    def weight_baseline(self) -> WeightCompression:
        """What the full weight compression does (built once): every layer's record, its SQNR the search's proxy."""
        if self._baseline is None:
            ctx = PassContext()
            self.build_config(self.weight_config({}), ctx)
            self._baseline = ctx.require(WeightCompression, "TrialBuilder")
        return self._baseline

    def _ensure_moments(self) -> None:
        """weight_only: the Gram matrices of every layer input (GPTQ and the per-layer output SQNR need them)."""
        if self.mode != "weight_only" or self.calib is None or self.cache.moments.gram:
            return
        graph = self._graph()
        gram = [n.inputs[0].name for n in graph.nodes if isinstance(linear_of(n), Linear)]
        collect_moments(graph, self.calib, gram, [], samples=self.config.calibration_samples,
                        batch_size=self.config.batch_size, into=self.cache.moments)

    def dynamic_config(self, choice: Choice) -> QuantizeConfig:
        return replace(self.config, mode="dynamic", exclude=self.config.exclude + tuple(exact(n) for n in sorted(choice)))

    def _ensure_ranges(self, plan) -> None:

        fixed = {n for n, ov in self.config.overrides.items() if ov.range is not None}
        missing = [t for t in plan.calibrated if t not in self.ranges and t not in fixed]
        if not missing:
            return
        ctx = PassContext(calibration=self.calib, progress=self.progress)
        config = replace(self.config, calibrator=self.calibrator)
        self.ranges.update(calibrate(self._graph(), Plan(calibrated=missing), config, ctx))
        warned = ctx.get(CalibrationWarnings)
        if warned is not None:
            self.warnings += tuple(m for m in warned.messages if m not in self.warnings)

    def presets(self) -> dict[str, tuple[str, Choice]]:
        """Whole-model alternatives to full INT8 that the search times as well: name -> (mode, choice).

        ``linear-only``: only the layers with weights (Conv/Gemm/MatMul with a constant weight) in INT8; attention's
        activation x activation MatMuls, Softmax, Add/Mul and pools stay float (on x86 CPUs without VNNI their int8
        kernels and Q/DQ pairs cost more than they save). ``dynamic``: MatMul/Gemm with weights quantized at run
        time (MatMulInteger), no calibrated ranges."""
        out: dict[str, tuple[str, Choice]] = {}
        if self.mode == "static":
            plan = self.plan()
            floats = {n: "float" for n, kind in plan.nodes.items() if kind != "passthrough" and n not in plan.weighted}
            if floats and any(n in plan.nodes for n in plan.weighted):
                out["linear-only"] = ("static", floats)
            if any(self.units(mode="dynamic")):
                out["dynamic"] = ("dynamic", {})
        return out

    def build_config(self, config: QuantizeConfig, ctx: PassContext | None = None
                     ) -> tuple[onnx.ModelProto, QuantizeResult]:
        """Quantize the prepared model with ``config`` (its passes record into ``ctx`` when given)."""
        ctx = ctx if ctx is not None else PassContext()
        ctx.calibration = self.calib
        if self.warnings:
            ctx.put(CalibrationWarnings(self.warnings))
        if config.compresses_weights_only:
            self._ensure_moments()
            ctx.put(self.cache)
        if self.smoothed is not None:
            ctx.put(self.smoothed)
        model, _ = apply_to_model(self.model, quantize_passes(config), ctx)
        result = ctx.require(QuantizeResult, "TrialBuilder")
        return model, replace(result, config=replace(result.config, **self.prepared_by))

    def config_for(self, choice: Choice, mode: str | None = None) -> QuantizeConfig:
        mode = mode or self.mode
        if mode in WEIGHT_MODES:
            return self.weight_config(choice)
        return self.dynamic_config(choice) if mode == "dynamic" else self.static_config(choice)

    def build(self, choice: Choice, *, verify: bool = False, ctx: PassContext | None = None,
              mode: str | None = None) -> tuple[onnx.ModelProto, QuantizeResult]:
        return self.build_config(replace(self.config_for(choice, mode), verify=verify), ctx)
