"""Importance of every unit of every channel group (higher = keep).

Each criterion gives one vector per group. Per-slot vectors are normalized by their mean before they are averaged,
so slots of different scale (a 3x3 conv weight and a bias) count alike and, for global allocation, groups are
comparable (every group's vector has mean 1).

- l1 / l2: norms of the weight slices (Conv/Gemm/MatMul weights, both the producing and the consuming side).
- bn_scale: |gamma| of the BatchNormalization / InstanceNormalization scales in the group (l1 where there is none).
- activation: mean |activation| over calibration data, on every activation slot of the group.
- reconstruction: expected squared change of every consuming layer's output when the unit is dropped,
  E[x_u^2] * ||W[:, u]||^2 summed over the consuming layers (exact for uncorrelated inputs).
- random: seeded uniform scores.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import DataError, RecipeError
from onnxcompress.ir.edit import expose_outputs
from onnxcompress.ir.query import constant_value
from onnxcompress.ops.channel_rules import BN_SCALE, WEIGHT
from onnxcompress.ops.facts import consumes
from onnxcompress.pruning.groups import Analysis, ChannelGroup, Slot
from onnxcompress.runtime.session import SessionOptions, batch_for_budget, make_session, run

log = logging.getLogger(__name__)
#: the activations of one statistics batch stay within this (the batch shrinks to fit)
STATS_MEMORY_MB = 256


def _normalized_mean(vectors: list[np.ndarray], n: int) -> np.ndarray:
    if not vectors:
        return np.ones(n)
    out = np.zeros(n)
    for v in vectors:
        mean = float(np.mean(v))
        out += v / mean if mean > 0 else np.ones(n)
    return out / len(vectors)


def _slice_norms(values: np.ndarray, axis: int, group: ChannelGroup, slot: Slot, power: int) -> np.ndarray:
    moved = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    per_pos = np.abs(flat).sum(axis=1) if power == 1 else (flat**2).sum(axis=1)
    return np.array([per_pos[u[slot]].sum() for u in group.units])


def weight_norms(group: ChannelGroup, tensors: dict[str, gs.Tensor], power: int,
                 role: str = WEIGHT) -> list[np.ndarray]:
    vectors = []
    for slot in group.slots:
        if group.roles.get(slot) == role:
            vec = _slice_norms(constant_value(tensors[slot[0]]), slot[1], group, slot, power)
            vectors.append(np.sqrt(vec) if power == 2 else vec)
    return vectors


def activation_stats(model: onnx.ModelProto, slots: list[Slot], data, max_samples: int) -> dict[Slot, tuple]:
    """(mean |x|, mean x^2, mean x) per position of every slot's axis over ``max_samples`` calibration samples."""

    names = sorted({name for name, _ in slots})
    session = make_session(expose_outputs(model, names),
                           SessionOptions(providers="cpu", opt_level="basic", memory_arena=False))
    specs = model_input_specs(model)
    first = next(data.limited(1).batched(1).bind(specs).feeds(), None)
    if first is None:
        raise DataError("the calibration data is empty", hint="pass a --calib file with at least one sample")
    batch = batch_for_budget(session, first, names, STATS_MEMORY_MB << 20, 32)
    sums: dict[Slot, list] = {}
    seen = 0
    for feeds in data.limited(max_samples).batched(batch).bind(specs).feeds():
        outs = run(session, feeds, names)
        for name, axis in slots:
            x = np.moveaxis(outs[name].astype(np.float64), axis, 0).reshape(outs[name].shape[axis], -1)
            acc = sums.setdefault((name, axis), [0.0, 0.0, 0.0, 0])
            acc[0] = acc[0] + np.abs(x).sum(axis=1)
            acc[1] = acc[1] + (x**2).sum(axis=1)
            acc[2] = acc[2] + x.sum(axis=1)
            acc[3] += x.shape[1]
        seen += 1
    if not seen:
        raise DataError("the calibration data is empty", hint="pass a --calib file with at least one sample")
    return {slot: (a / max(n, 1), b / max(n, 1), c / max(n, 1)) for slot, (a, b, c, n) in sums.items()}


def _unit_means(stat: np.ndarray, group: ChannelGroup, slot: Slot) -> np.ndarray:
    return np.array([stat[u[slot]].mean() for u in group.units])


def reconstruction_scores(group: ChannelGroup, tensors: dict[str, gs.Tensor], stats: dict) -> list[np.ndarray]:
    """For every consuming layer (its weight's input axis is in the group): E[x_u^2] * ||W[:, u]||^2."""
    vectors = []
    for slot in group.slots:
        if group.roles.get(slot) != WEIGHT:
            continue
        for node in tensors[slot[0]].outputs:
            inputs = {t.name for t in node.inputs}
            act = next((s for s in group.activation_slots() if s[0] in inputs and s in stats), None)
            if act is None or not consumes(node, tensors[slot[0]], slot[1]):
                continue
            energy = _slice_norms(constant_value(tensors[slot[0]]), slot[1], group, slot, 2)
            vectors.append(_unit_means(stats[act][1], group, act) * energy)
    return vectors


def score(analysis: Analysis, graph: gs.Graph, criterion: str, *, seed: int = 0, data=None,
          max_samples: int = 128, model: onnx.ModelProto | None = None) -> tuple[dict[int, np.ndarray], list[str]]:
    """Importance vector per group id, plus notes (fallbacks taken)."""
    tensors = graph.tensors()
    notes: list[str] = []
    stats = {}
    if criterion in ("activation", "reconstruction"):
        if data is None:
            raise RecipeError(f"criterion '{criterion}' needs calibration data", hint="pass --calib DATA.npz")
        slots = [s for g in analysis.groups for s in g.activation_slots()]
        stats = activation_stats(model, slots, data, max_samples)
    rng = np.random.default_rng(seed)
    out = {}
    for g in analysis.groups:
        out[g.id] = _group_score(g, tensors, criterion, stats, rng, notes)
    return out, notes


def _group_score(g: ChannelGroup, tensors, criterion: str, stats, rng, notes: list[str]) -> np.ndarray:
    n = g.size
    if criterion == "random":
        return rng.random(n)
    if criterion == "activation":
        return _normalized_mean([_unit_means(stats[s][0], g, s) for s in g.activation_slots() if s in stats], n)
    if criterion == "reconstruction":
        vectors = reconstruction_scores(g, tensors, stats)
        if vectors:
            return _normalized_mean([np.sum(vectors, axis=0)], n)
        notes.append(f"group {g.id}: no consuming layer with data, used l2")
        criterion = "l2"
    if criterion == "bn_scale":
        vectors = weight_norms(g, tensors, 1, BN_SCALE)
        if vectors:
            return _normalized_mean(vectors, n)
        notes.append(f"group {g.id}: no BatchNormalization scale, used l1")
        criterion = "l1"
    vectors = weight_norms(g, tensors, 1 if criterion == "l1" else 2)
    return _normalized_mean(vectors, n)
