"""The one mutating pruning pass and its allocation.

:class:`PruneChannelsPass` analyses the graph (groups.py), scores every unit (importance.py), decides how many units
each group loses (allocation: local or global, min_channels, round_to, overrides; or a search over the ratio that
reaches a MACs/parameter target) and cuts: parameters are sliced, attributes and shape constants that encode a
channel count are rewritten (ops.channel_fixups), activation shapes are re-inferred. Tensor names are preserved and
the kept positions of every cut (tensor, axis) are left in the context (:class:`KeptChannels`) for distillation.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.errors import InternalError, RecipeError, UnsupportedModelError
from onnxcompress.ir.cost import count_macs, count_parameters
from onnxcompress.ir.external import checkable
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.ir.outputs import model_bytes
from onnxcompress.ir.query import constant_value, node_matches
from onnxcompress.ir.subgraphs import all_graphs
from onnxcompress.ops.channel_fixups import FIXUPS
from onnxcompress.ops.facts import LAYERS
from onnxcompress.passes.artifacts import KEPT_CHANNELS_KEY
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.passes.cleanup import InferShapesPass
from onnxcompress.pruning.config import AUTO_ALIGN, AUTO_ALIGN_MIN_CHANNELS, AUTO_ROUND, PruneConfig
from onnxcompress.pruning.correct import apply_corrections, plan_corrections
from onnxcompress.pruning.groups import Analysis, ChannelGroup, Slot, _shape_info, analyze, first_sample, input_shapes_from_data
from onnxcompress.pruning.importance import activation_stats, score
from onnxcompress.pruning.result import (
    BlockedRecord,
    Costs,
    GroupRecord,
    Importance,
    KeptRecord,
    PruneResult,
    TargetSearch,
)

log = logging.getLogger(__name__)

Plan = dict[int, np.ndarray]  # group id -> removed unit indices
SEARCH_STEPS = 14
MAX_RATIO = 0.99


# --- allocation --------------------------------------------------------------------------------------------------
def _override(group: ChannelGroup, overrides: dict[str, float]) -> float | None:
    for pattern, ratio in overrides.items():
        if any(node_matches(pattern, n, "") for n in group.nodes):
            return ratio
    return None


def alignment(group: ChannelGroup, cfg: PruneConfig) -> int:
    """The multiple the group's kept units are rounded to (``round_to``, resolved for ``auto``)."""
    if cfg.round_to != AUTO_ROUND:
        return int(cfg.round_to)
    single = all(len(p) == 1 for u in group.units[:1] for p in u.values())  # one channel per unit (not heads/blocks)
    return AUTO_ALIGN if single and group.size >= AUTO_ALIGN_MIN_CHANNELS else 1


def _constrained(n: int, n_remove: int, cfg: PruneConfig, align: int) -> int:
    keep = max(n - n_remove, min(cfg.min_channels, n), 1)
    if align > 1:
        keep = min(n, max(align, math.floor(keep / align + 0.5) * align, math.ceil(cfg.min_channels / align) * align))
    return n - keep


def _lowest(scores: np.ndarray, k: int) -> np.ndarray:
    return np.sort(np.argsort(scores, kind="stable")[:k]) if k > 0 else np.zeros(0, np.int64)


def allocate(analysis: Analysis, scores: dict[int, np.ndarray], cfg: PruneConfig, ratio: float) -> Plan:
    """Removed units per group for ``ratio`` (per-group overrides win)."""
    counts: dict[int, int] = {}
    pool = []
    for g in analysis.groups:
        r = _override(g, cfg.overrides)
        if r is None and cfg.allocation == "global":
            pool.append(g)
        else:
            counts[g.id] = math.floor((ratio if r is None else r) * g.size + 1e-9)
    if pool:
        flat = np.concatenate([scores[g.id] for g in pool])
        owner = np.concatenate([np.full(g.size, g.id) for g in pool])
        chosen = np.argsort(flat, kind="stable")[: math.floor(ratio * len(flat) + 1e-9)]
        for g in pool:
            counts[g.id] = int(np.sum(owner[chosen] == g.id))
    return {g.id: _lowest(scores[g.id], _constrained(g.size, counts[g.id], cfg, alignment(g, cfg)))
            for g in analysis.groups}


# --- cutting -------------------------------------------------------------------------------------------------------
def kept_positions(analysis: Analysis, plan: Plan) -> dict[Slot, np.ndarray]:
    removed: dict[Slot, list[np.ndarray]] = {}
    for g in analysis.groups:
        for u in plan.get(g.id, ()):
            for slot, pos in g.units[int(u)].items():
                removed.setdefault(slot, []).append(pos)
    return {slot: np.setdiff1d(np.arange(analysis.sizes[slot]), np.concatenate(parts))
            for slot, parts in sorted(removed.items())}


def _set_values(t: gs.Tensor, values: np.ndarray) -> None:
    if isinstance(t, gs.Constant):
        t.values = values
    else:  # the output of a Constant node
        t.inputs[0].attrs["value"] = gs.Constant(t.name, values)


def cut(graph: gs.Graph, analysis: Analysis, plan: Plan) -> dict[Slot, np.ndarray]:
    """Apply ``plan`` to ``graph`` in place (tensors looked up by name); returns the kept positions per slot."""
    kept = kept_positions(analysis, plan)
    tensors = graph.tensors()

    def kept_of(t: gs.Tensor, axis: int):
        return kept.get((t.name, axis))

    for node in list(graph.nodes):
        fixup = FIXUPS.lookup(node.op, node.domain, graph.opset)
        if fixup is not None:
            fixup(node, kept_of, analysis.info)
    for (name, axis), k in kept.items():
        t = tensors[name]
        values = constant_value(t)
        if values is not None:
            _set_values(t, np.take(values, k, axis=axis))
    io = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    for name, t in graph.tensors().items():
        if isinstance(t, gs.Variable) and name not in io:
            t.shape = None
    graph.cleanup(remove_unused_node_outputs=False).toposort()
    InferShapesPass().call(graph, PassContext())
    return kept


# --- costs and the target search -----------------------------------------------------------------------------------
def costs(model: onnx.ModelProto, input_shapes: dict | None = None, sample: dict | None = None) -> Costs:
    return Costs(count_macs(model, input_shapes, sample)["total"], count_parameters(model)["total"], model_bytes(model))


def _cost_of(base: onnx.ModelProto, analysis: Analysis, plan: Plan, shapes: dict, sample: dict | None) -> Costs:
    graph = to_graph(base)
    cut(graph, analysis, plan)
    return costs(to_model(graph, like=base), shapes, sample)


def search_ratio(base: onnx.ModelProto, analysis: Analysis, scores, cfg: PruneConfig, before: Costs,
                 shapes: dict, sample: dict | None = None) -> tuple[float, Plan, TargetSearch]:
    """Smallest ratio whose plan keeps <= the target fraction of MACs/params; (ratio, plan, search record)."""
    key, target = ("macs", cfg.target_macs) if cfg.target_macs is not None else ("params", cfg.target_params)
    assert target is not None
    if getattr(before, key) == 0:
        raise RecipeError(f"the model has no countable {key}", hint="use --ratio instead of a target")

    def fraction(r: float) -> tuple[float, Plan]:
        plan = allocate(analysis, scores, cfg, r)
        return getattr(_cost_of(base, analysis, plan, shapes, sample), key) / getattr(before, key), plan

    best, best_plan = fraction(MAX_RATIO)
    if best > target:
        raise RecipeError(
            f"target_{key}={target} cannot be met: pruning every prunable group as far as allowed keeps "
            f"{best:.3f} of the {key}",
            hint=f"ask for target_{key} >= {math.ceil(best * 1000) / 1000}, lower min_channels/round_to, or "
                 "remove exclusions (see the blocked groups in `onnxcompress inspect`)")
    lo, hi, hi_plan, hi_frac = 0.0, MAX_RATIO, best_plan, best
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        frac, plan = fraction(mid)
        if frac <= target:
            hi, hi_plan, hi_frac = mid, plan, frac
        else:
            lo = mid
    return hi, hi_plan, TargetSearch(key, target, round(hi_frac, 4), round(hi, 4))


# --- the pass --------------------------------------------------------------------------------------------------------
class PruneChannelsPass(Pass):
    """Remove the least important units of every channel group (see module docstring). Leaves a
    :class:`PruneResult` and the :class:`KeptChannels` record in the context."""

    def __init__(self, config: PruneConfig):
        if not isinstance(config, PruneConfig):
            raise RecipeError(f"config must be a PruneConfig, got {type(config).__name__}", hint="PruneConfig(ratio=0.3)")
        self.config = config

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if self.config.needs_data and ctx.calibration is None:
            raise RecipeError(f"criterion '{self.config.criterion}' needs calibration data",
                              hint="pass --calib DATA.npz")

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        cfg = self.config
        base = to_model(graph)
        shapes, sample = input_shapes_from_data(graph, ctx.calibration), first_sample(ctx.calibration)
        analysis = analyze(graph, cfg.exclude, _shape_info(graph, shapes, sample))
        for b in analysis.blocked:
            ctx.decide(self.name, f"blocked group {b.id} ({b.units} units)", "blocked", "; ".join(b.reasons))
        _check_prunable(analysis, cfg, graph)
        scores, notes = score(analysis, graph, cfg.criterion, seed=cfg.seed, data=ctx.calibration,
                              max_samples=cfg.max_samples, model=base)
        before = costs(base, shapes, sample)
        target = None
        if cfg.target_macs is not None or cfg.target_params is not None:
            _, plan, target = search_ratio(base, analysis, scores, cfg, before, shapes, sample)
        else:
            plan = allocate(analysis, scores, cfg, cfg.ratio)
        deltas = {}
        if cfg.bias_correction:
            slots = [s for g in analysis.groups for s in g.activation_slots()]
            stats = activation_stats(base, slots, ctx.calibration, cfg.max_samples)
            deltas = plan_corrections(analysis, graph, plan, stats)
        kept = cut(graph, analysis, plan)
        corrected = apply_corrections(graph, deltas, kept)
        if corrected:
            notes.append(f"bias correction applied to {len(corrected)} layers")
        after = costs(to_model(graph), shapes, sample)
        result = _result(cfg, analysis, scores, plan, kept, before, after, target, notes)
        for g in analysis.groups:
            ctx.decide(self.name, f"group {g.id}", "pruned" if len(plan[g.id]) else "kept",
                       f"{g.size} -> {g.size - len(plan[g.id])} units")
        ctx.put(result)
        ctx.put(result.kept_channels())
        ctx.metadata[KEPT_CHANNELS_KEY] = result.kept_channels().to_json()  # distill finds it without --kept
        removed = sum(len(v) for v in plan.values())
        stats = {"groups": len(analysis.groups), "blocked": len(analysis.blocked), "removed_units": removed,
                 "macs_before": before.macs, "macs_after": after.macs}
        return PassResult(graph, removed > 0, stats)

    def ensures(self, graph: gs.Graph, ctx: PassContext) -> None:
        try:
            onnx.checker.check_model(checkable(to_model(graph)), full_check=True)
        except Exception as e:  # a checker failure here is a bug in a rule, not the user's fault
            raise InternalError(f"pruning produced an invalid model: {str(e).splitlines()[0]}") from e


def _check_prunable(analysis: Analysis, cfg: PruneConfig, graph: gs.Graph) -> None:
    wants = cfg.ratio > 0 or cfg.target_macs is not None or cfg.target_params is not None or cfg.overrides
    if analysis.groups or not wants:
        return
    reasons = sorted({r for b in analysis.blocked for r in b.reasons})[:5]
    nested = [n for g in all_graphs(graph)[1:] for n in g.nodes if n.op in LAYERS]
    if reasons:
        why = f" (blocked: {'; '.join(reasons)})"
    elif nested:
        why = (f" (its {len(nested)} Conv/Gemm/MatMul layers are inside If/Loop/Scan subgraphs, whose channels "
               "pruning does not rewrite)")
    else:
        why = " (no Conv/Gemm/MatMul with constant weights)"
    hint = "see `onnxcompress inspect MODEL` for the blocked groups and their reasons"
    raise UnsupportedModelError("nothing to prune: the model has no prunable channel group" + why,
                                hint=hint + ("; `onnxcompress quantize` does cover subgraph layers" if nested else ""))


def _importance(s: np.ndarray, removed: np.ndarray) -> Importance:
    return Importance(round(float(s.min()), 6), round(float(s.mean()), 6), round(float(s.max()), 6),
                      round(float(s[removed].max()), 6) if len(removed) else None)


def _group_record(g: ChannelGroup, scores: np.ndarray, removed: np.ndarray, cfg: PruneConfig) -> GroupRecord:
    d = g.to_dict()
    lost = sum(len(g.units[int(u)][(g.activation_slots() or list(g.slots))[0]]) for u in removed)
    return GroupRecord(g.id, tuple(d["nodes"]), tuple(d["slots"]), d["n_slots"], g.size, g.size - len(removed),
                       d["channels"], d["channels"] - lost, _importance(scores, removed), alignment(g, cfg))


def _result(cfg: PruneConfig, analysis: Analysis, scores, plan: Plan, kept, before: Costs, after: Costs,
            target: TargetSearch | None, notes: list[str]) -> PruneResult:
    groups = tuple(_group_record(g, scores[g.id], plan[g.id], cfg) for g in analysis.groups)
    blocked = tuple(BlockedRecord(b.id, b.units, tuple(b.to_dict()["slots"]), len(b.slots), b.reasons)
                    for b in analysis.blocked)
    records = tuple(KeptRecord(name, axis, analysis.sizes[(name, axis)], len(k), tuple(int(i) for i in k))
                    for (name, axis), k in kept.items())
    pruned = sum(1 for g in groups if g.units_after < g.units_before)
    summary = (f"{pruned}/{len(groups)} groups pruned, {len(analysis.blocked)} blocked; MACs {before.macs:,} -> "
               f"{after.macs:,} ({_frac(after.macs, before.macs)}), params {before.params:,} -> "
               f"{after.params:,} ({_frac(after.params, before.params)})")
    return PruneResult(cfg, summary, before, after, target, groups, blocked, tuple(notes), records)


def _frac(a: int, b: int) -> str:
    return f"x{a / b:.3f}" if b else "n/a"
