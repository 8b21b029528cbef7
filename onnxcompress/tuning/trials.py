"""Building the quantized model of one trial: a *choice* maps node names to a higher precision ("int16": the
node's activation inputs and output in 16 bits, weights int8; "float": the node is excluded), every other
quantizable node stays INT8.

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
from onnxcompress.quantization.config import QuantizeConfig, TensorOverride
from onnxcompress.quantization.dynamic import why_not_dynamic
from onnxcompress.quantization.insert_qdq import CalibrationWarnings, calibrate
from onnxcompress.quantization.plan import Plan, plan_graph
from onnxcompress.quantization.result import QuantizeResult
from onnxcompress.quantization.smooth import SmoothQuantPass
from onnxcompress.quantization.stage import quantize_passes, rewrite_passes

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

    def __init__(self, model: onnx.ModelProto, calib, config: QuantizeConfig):

        self.mode = config.mode
        self.calib = load_input_data(calib) if calib is not None else None
        prepare = ([SmoothQuantPass(config.smooth_quant)] if config.smooth_quant is not None else [])
        graph = Sequential(*prepare, *rewrite_passes(config))(to_graph(model), PassContext(calibration=self.calib)).graph
        graph.toposort()
        name_nodes(graph)
        self.model = to_model(graph, like=model)  # prepared, every node named: the names choices refer to
        self.config = replace(config, verify=False, rewrites=False, smooth_quant=None)
        self.ranges: dict[str, tuple[float, float]] = {}
        self.warnings: tuple[str, ...] = ()  # calibration-data warnings, carried into every build's result

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
        if (mode or self.mode) == "dynamic":

            return {n.name: n.op for n in self._graph().nodes if n.op in ("MatMul", "Gemm") and why_not_dynamic(n) is None}
        plan = self.plan(replace(self.config, mode="static"))
        return {n: plan.ops[n] for n in plan.nodes if plan.nodes[n] != "passthrough"}

    # --- building ---------------------------------------------------------------------------------------------
    def static_config(self, choice: Choice) -> QuantizeConfig:
        base = replace(self.config, mode="static")
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
            overrides[tensor] = replace(ov, dtype=dtype, range=ov.range or self.ranges[tensor])
        for tensor in int16 - set(plan.calibrated):  # pass-through members share their group's range
            overrides[tensor] = replace(overrides.get(tensor, TensorOverride()), dtype="int16")
        return replace(cfg, overrides=overrides)

    def dynamic_config(self, choice: Choice) -> QuantizeConfig:
        return replace(self.config, mode="dynamic", exclude=self.config.exclude + tuple(exact(n) for n in sorted(choice)))

    def _ensure_ranges(self, plan) -> None:

        fixed = {n for n, ov in self.config.overrides.items() if ov.range is not None}
        missing = [t for t in plan.calibrated if t not in self.ranges and t not in fixed]
        if not missing:
            return
        ctx = PassContext(calibration=self.calib)
        self.ranges.update(calibrate(self._graph(), Plan(calibrated=missing), self.config, ctx))
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
        model, _ = apply_to_model(self.model, quantize_passes(config), ctx)
        return model, ctx.require(QuantizeResult, "TrialBuilder")

    def build(self, choice: Choice, *, verify: bool = False, ctx: PassContext | None = None,
              mode: str | None = None) -> tuple[onnx.ModelProto, QuantizeResult]:
        cfg = self.dynamic_config(choice) if (mode or self.mode) == "dynamic" else self.static_config(choice)
        return self.build_config(replace(cfg, verify=verify), ctx)
