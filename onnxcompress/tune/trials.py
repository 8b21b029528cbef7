"""Building the quantized model of one trial: a *choice* maps node names to a higher precision ("int16": the
node's activation inputs and output in 16 bits, weights int8; "float": the node is excluded), every other
quantizable node stays INT8.

Calibration runs once per tensor: ranges are cached, and a trial's config fixes every range through
``TensorOverride(range=...)``, so the quantizer materializes without re-running the calibration data (a trial that
needs a tensor no earlier plan calibrated measures just that tensor). Static results are byte-identical to a plain
``quantize_model`` with the same selection, because the cached ranges are the ones it would measure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

import onnx

from onnxcompress.passes.base import PassContext, Sequential
from onnxcompress.quantize.config import QuantizeConfig, TensorOverride

log = logging.getLogger(__name__)

Choice = dict[str, str]


def choice_key(choice: Choice) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(choice.items()))


def exact(name: str) -> str:
    """A selection pattern that matches exactly one node name (never an op type)."""
    return "re:^" + re.escape(name) + "$"


class TrialBuilder:
    """Pre-processes the float model once, then builds the quantized model of any choice."""

    def __init__(self, model: onnx.ModelProto, calib, config: QuantizeConfig, mode: str = "static"):
        from onnxcompress.data.inputs import load_input_data
        from onnxcompress.ir.graph import to_graph, to_model
        from onnxcompress.quantize.api import preprocess_passes
        from onnxcompress.quantize.plan import ensure_node_names

        self.config = replace(config, verify=False)
        self.mode = mode
        self.calib = load_input_data(calib) if calib is not None else None
        graph = Sequential(*preprocess_passes(config))(to_graph(model), PassContext()).graph
        graph.toposort()
        ensure_node_names(graph)
        self.model = to_model(graph, like=model)  # pre-processed, every node named: the names choices refer to
        self.ranges: dict[str, tuple[float, float]] = {}

    # --- planning ---------------------------------------------------------------------------------------------
    def _graph(self):
        from onnxcompress.ir.graph import to_graph
        from onnxcompress.quantize.plan import ensure_node_names

        graph = to_graph(self.model)
        graph.toposort()
        ensure_node_names(graph)
        return graph

    def plan(self, config: QuantizeConfig | None = None):
        from onnxcompress.quantize.plan import plan_graph

        return plan_graph(self._graph(), config or self.config)

    def units(self, mode: str | None = None) -> dict[str, str]:
        """Quantizable nodes of the full INT8 plan (name -> op type), in graph order: the search's units."""
        if (mode or self.mode) == "dynamic":
            from onnxcompress.quantize.dynamic import why_not_dynamic

            return {n.name: n.op for n in self._graph().nodes if n.op in ("MatMul", "Gemm") and why_not_dynamic(n) is None}
        plan = self.plan()
        return {n: plan.ops[n] for n in plan.nodes if plan.nodes[n] != "passthrough"}

    # --- building ---------------------------------------------------------------------------------------------
    def static_config(self, choice: Choice) -> QuantizeConfig:
        floats = tuple(exact(n) for n, p in sorted(choice.items()) if p == "float")
        cfg = replace(self.config, exclude=self.config.exclude + floats)
        plan = self.plan(cfg)
        int16 = set()
        for node, precision in choice.items():
            if precision == "int16" and node in plan.nodes:
                int16.update(s.tensor for s in plan.specs if s.node == node and s.role == "activation")
                int16.update(t for t, owner in plan.output_of.items() if owner == node)
        self._ensure_ranges(plan)
        overrides = dict(self.config.overrides)
        for tensor in plan.calibrated:
            ov = overrides.get(tensor, TensorOverride())
            dtype = "int16" if tensor in int16 else ov.dtype
            overrides[tensor] = replace(ov, dtype=dtype, range=ov.range or self.ranges[tensor])
        for tensor in int16 - set(plan.calibrated):  # pass-through members share their group's range
            overrides[tensor] = replace(overrides.get(tensor, TensorOverride()), dtype="int16")
        return replace(cfg, overrides=overrides)

    def _ensure_ranges(self, plan) -> None:
        from onnxcompress.quantize.plan import Plan
        from onnxcompress.quantize.qdq import calibrate

        fixed = {n for n, ov in self.config.overrides.items() if ov.range is not None}
        missing = [t for t in plan.calibrated if t not in self.ranges and t not in fixed]
        if not missing:
            return
        ctx = PassContext(calibration=self.calib)
        self.ranges.update(calibrate(self._graph(), Plan(calibrated=missing), self.config, ctx))

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

    def build(self, choice: Choice, *, verify: bool = False, ctx: PassContext | None = None,
              mode: str | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
        if (mode or self.mode) == "dynamic":
            from onnxcompress.quantize.dynamic import DynamicQuantizeConfig, quantize_dynamic_model

            dyn = DynamicQuantizeConfig(per_channel=self.config.per_channel, reduce_range=self.config.reduce_range,
                                        include=self.config.include,
                                        exclude=self.config.exclude + tuple(exact(n) for n in sorted(choice)))
            return quantize_dynamic_model(self.model, dyn, verify=verify, ctx=ctx)
        from onnxcompress.quantize.api import quantize_model

        return quantize_model(self.model, self.calib, replace(self.static_config(choice), verify=verify), ctx=ctx)
