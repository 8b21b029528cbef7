"""Latency-aware placement in the quantization stage: decide, for the full INT8 plan, which nodes stay float.

``cost-model`` (default): the target's committed cost table (:mod:`.costs`) and the shapes of one calibration
sample give every node's float and int8 time and every Q/DQ's; :func:`.placement.place` picks the fastest
choice. Nothing here reads the host: the same model, data and recipe give the same placement on every machine.

``measure``: the float graph and its full-INT8 model are profiled on this host's onnxruntime (the target's
provider), the cost table is rescaled to what was measured, the placement is solved with it, and the candidates
(that placement, full INT8) are timed against the float model, interleaved in one process; the fastest one that
gains ``placement_min_gain`` wins, else every node stays float. The outcome is recorded (report, and the
effective recipe as ``placement = "fixed"`` with its ``float_nodes``) so the run can be reproduced anywhere.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import UserError
from onnxcompress.ir.graph import to_model
from onnxcompress.ir.shapes import known_shapes, observed_shapes
from onnxcompress.ir.subgraphs import nodes_with_graphs
from onnxcompress.ops.cost_rules import kernel_work
from onnxcompress.passes.base import PassContext
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.costs import CostModel, Sample, rescaled, table_for_target
from onnxcompress.quantization.placement import Placement, fixed_float_us, place
from onnxcompress.quantization.plan import Plan
from onnxcompress.runtime.profiling import profile_kernels, time_models
from onnxcompress.runtime.session import SessionOptions

log = logging.getLogger(__name__)

#: builds the quantized model of a config (float_nodes set) on a copy of the graph: (model, plan)
Build = Callable[[QuantizeConfig], tuple[onnx.ModelProto, Plan]]


def static_batch(graph: gs.Graph) -> int | None:
    """The graph's static batch dimension (axis 0 of every input that has one), else None."""
    dims = {t.shape[0] for t in graph.inputs if t.shape and isinstance(t.shape[0], int) and t.shape[0] > 0}
    return next(iter(dims)) if len(dims) == 1 else None


def _first_feeds(graph: gs.Graph, data, batch: int) -> dict[str, np.ndarray]:
    model = to_model(graph.copy())
    feeds = next(data.batched(batch).limited(batch).bind(model_input_specs(model)).feeds(), None)
    if feeds is None:
        raise UserError(f"{data.source} contains no samples", hint="give at least one calibration sample")
    return feeds


def sample_shapes(graph: gs.Graph, data, batch: int) -> dict[str, tuple]:
    """Tensor shapes at ``batch`` (static inference from one batch's input shapes, completed by one run)."""
    feeds = _first_feeds(graph, data, batch)
    model = to_model(graph.copy())
    try:
        return known_shapes(model, {k: list(np.shape(v)) for k, v in feeds.items() if np.ndim(v)}, feeds)
    except UserError as e:  # static inference refuses the sample's shapes: one run observes them instead
        log.info("placement shapes from one run (static inference: %s)", e)
        return observed_shapes(model, feeds, [o for n in model.graph.node for o in n.output])


def decide(graph: gs.Graph, plan: Plan, config: QuantizeConfig, ctx: PassContext, build: Build) -> Placement | None:
    """The placement for ``plan`` under ``config.placement`` (None: no cost model for the target, or nothing to
    decide); every node it keeps float is recorded as a decision."""
    if config.placement == "fixed" or not any(k != "passthrough" for k in plan.nodes.values()):
        return None
    target = config.resolved_target
    table = table_for_target(target.name)
    if table is None:
        ctx.decide("QuantizeQDQPass", "placement", "skipped",
                   f"no cost model for target {target.name}: every quantizable node is INT8 "
                   "(placement = 'measure' profiles this host instead)")
        if config.placement != "measure":
            return None
    fixed = static_batch(graph)
    shape_batch = fixed or 1
    batch = fixed or config.placement_batch
    shapes = sample_shapes(graph, ctx.calibration, shape_batch)
    scale = batch // shape_batch
    if config.placement == "measure":
        return _measured(graph, plan, config, ctx, build, table, shapes, batch, scale)
    assert table is not None
    fixed_us = fixed_float_us(graph, plan, shapes, table, scale)
    result = place(graph, plan, shapes, table, scale, min_gain=config.placement_min_gain, fixed_us=fixed_us)
    return replace(result, batch=batch)


def _measured(graph: gs.Graph, plan: Plan, config: QuantizeConfig, ctx: PassContext, build: Build,
              table: CostModel | None, shapes: dict, batch: int, scale: int) -> Placement:
    """Profile float and full INT8 on this host, rescale the table, place, and time the candidates."""
    provider = config.resolved_target.provider
    options = SessionOptions(providers=provider, threads=0, opt_level="all")
    feeds = _first_feeds(graph, ctx.calibration, batch)
    float_model = to_model(graph.copy())
    full_int8, _ = build(replace(config, placement="fixed"))
    nodes = {n.name: n for n, _ in nodes_with_graphs(graph)}
    samples: list[Sample] = []
    for model in (float_model, full_int8):
        for ev in profile_kernels(model, feeds, options, runs=3, warmup=2):
            kw = kernel_work(ev, nodes.get)
            if kw is not None:
                samples.append((kw[0], kw[1], ev.us))
    host = f"{platform.machine()} {platform.processor() or ''}".strip()
    base = table if table is not None else CostModel("empty", "no committed table", {})
    model, factors = rescaled(base, samples, f"{base.source}; rescaled by kernel profiles on this host ({host})")
    fixed_us = fixed_float_us(graph, plan, shapes, model, scale)
    placed = replace(place(graph, plan, shapes, model, scale, min_gain=0.0, fixed_us=fixed_us), batch=batch)
    return _timed_choice(placed, graph, plan, config, build, float_model, full_int8, feeds, options, factors)


def _timed_choice(placed: Placement, graph: gs.Graph, plan: Plan, config: QuantizeConfig, build: Build,
                  float_model: onnx.ModelProto, full_int8: onnx.ModelProto, feeds: dict, options: SessionOptions,
                  factors: dict[str, float]) -> Placement:
    """Time float, the placement and full INT8 interleaved; keep the fastest that gains ``min_gain``."""
    candidates: dict[str, tuple[onnx.ModelProto, tuple[str, ...]]] = {"full_int8": (full_int8, ())}
    if placed.faster and placed.float_nodes:
        model, _ = build(replace(config, placement="fixed", float_nodes=config.float_nodes + placed.float_nodes))
        candidates["placement"] = (model, placed.float_nodes)
    models = {"float": float_model, **{k: m for k, (m, _) in candidates.items()}}
    medians = time_models(models, feeds, options, warmup=2, rounds=config.placement_iterations)
    speedups = {k: medians["float"] / medians[k] for k in candidates if medians[k] > 0}
    winners = [k for k in sorted(candidates, key=lambda k: -speedups.get(k, 0.0))
               if speedups.get(k, 0.0) >= 1.0 + config.placement_min_gain]
    all_nodes = tuple(n.node for n in placed.nodes)
    chosen = winners[0] if winners else None
    float_nodes = candidates[chosen][1] if chosen else all_nodes
    measured: dict[str, Any] = {
        "host": f"{platform.machine()}", "provider": options.providers, "batch": placed.batch,
        "rounds": config.placement_iterations, "median_ms": {k: round(v * 1e3, 3) for k, v in medians.items()},
        "speedup": {k: round(v, 3) for k, v in speedups.items()}, "chosen": chosen or "float",
        "candidates": {k: list(fn) for k, (_, fn) in candidates.items()},
        "rescale_factors": {k: round(v, 3) for k, v in sorted(factors.items())}}
    int8 = set(all_nodes) - set(float_nodes)
    nodes = tuple(replace(n, int8=n.node in int8) for n in placed.nodes)
    plan_us = {"full_int8": placed.estimated_int8_us, "placement": placed.estimated_plan_us}.get(
        chosen or "", placed.estimated_float_us)
    return replace(placed, float_nodes=float_nodes, faster=chosen is not None, nodes=nodes, measured=measured,
                   estimated_plan_us=plan_us)
