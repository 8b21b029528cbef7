"""Sensitivity analysis: which nodes (and prunable channel groups) cost the most accuracy.

1. One-pass proxy (all nodes at once): a *shadow* copy of every quantizable node is added to the float graph,
   fed with the float model's own inputs passed through that node's quantization (the full-INT8 plan's Q/DQ
   parameters and int8 weights). One run over the calibration data gives, per node, the SQNR of its output when
   only it is quantized, against its float output. Low SQNR = fragile.
2. Full-model metrics for the ``top_k`` nodes of the proxy ranking: the goal metric when only that node is left
   float (the gain over full INT8) and when only that node is quantized. The final ranking puts those nodes
   first, ordered by the measured gain.
3. Pruning: per prunable channel group, the metric after pruning just that group at a given ratio.
"""

from __future__ import annotations

import glob
import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.errors import UserError
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.ir.query import constant_value
from onnxcompress.ir.shapes import known_shapes
from onnxcompress.passes.base import PassContext, apply_to_model
from onnxcompress.passes.progress import Progress, track
from onnxcompress.pruning import PruneChannelsPass, PruneConfig, PruneResult, analyze_groups
from onnxcompress.quantization.config import WEIGHT_MODES
from onnxcompress.quantization.dynamic import weight_scales
from onnxcompress.quantization.lower import lowered_from
from onnxcompress.runtime.session import SessionOptions, make_session
from onnxcompress.tuning.trials import TrialBuilder, exact

log = logging.getLogger(__name__)
SUFFIX = "__sensitivity"


# --- one-pass proxy ---------------------------------------------------------------------------------------------
class _Shadow:
    """Adds shadow nodes to the float graph ``fg``; inputs come from the quantized graph's Q/DQ structure."""

    def __init__(self, fg: gs.Graph):
        self.fg = fg
        self.tensors = fg.tensors()
        self.cache: dict[str, gs.Tensor] = {}

    def float_tensor(self, name: str) -> gs.Tensor | None:
        t = self.tensors.get(name)
        if t is None and name.endswith("_float"):  # graph outputs are renamed <name>_float before their Q
            t = self.tensors.get(name[: -len("_float")])
        return t

    def static_input(self, t: gs.Tensor) -> gs.Tensor | None:
        if isinstance(t, gs.Constant) or not t.name:
            return t
        producer = t.inputs[0] if t.inputs else None
        if producer is None or producer.op != "DequantizeLinear":
            return self.float_tensor(t.name)
        if t.name in self.cache:
            return self.cache[t.name]
        q = producer.inputs[0]
        if isinstance(q, gs.Constant):
            src = q
        elif q.inputs and q.inputs[0].op == "QuantizeLinear":
            qn = q.inputs[0]
            fx = self.float_tensor(qn.inputs[0].name)
            if fx is None:
                return None
            # on the DQ's grid: a Q that quantizes another tensor onto it (quantization.lower's hard-sigmoid:
            # Q(x + beta/alpha, s/alpha) = Q(HardSigmoid(x), s)) has other parameters than the DQ that reads it
            src = gs.Variable(t.name + SUFFIX + "_q", dtype=q.dtype)
            self.fg.nodes.append(gs.Node("QuantizeLinear", src.name, attrs=dict(producer.attrs), domain=qn.domain,
                                         inputs=[fx, *producer.inputs[1:]], outputs=[src]))
        else:
            return None
        out = gs.Variable(t.name + SUFFIX, dtype=np.float32)
        self.fg.nodes.append(gs.Node("DequantizeLinear", out.name, attrs=dict(producer.attrs), domain=producer.domain,
                                     inputs=[src, *producer.inputs[1:]], outputs=[out]))
        self.cache[t.name] = out
        return out

    def dynamic_input(self, node: gs.Node, index: int) -> gs.Tensor:
        """Emulated dynamic quantization: x -> DynamicQuantizeLinear -> DequantizeLinear; W -> int8 -> float."""

        t = node.inputs[index]
        if index == 1:
            w = constant_value(t).astype(np.float32)
            trans = node.op == "Gemm" and int(node.attrs.get("transB", 0))
            q, s = weight_scales(w.T if trans else w, True, self.reduce_range)
            deq = (q.astype(np.float32) * s).astype(np.float32)
            return gs.Constant(node.name + SUFFIX + "_w", deq.T.copy() if trans else deq)
        if index != 0:
            return t
        if t.name not in self.cache:
            names = [t.name + SUFFIX + s for s in ("_q", "_s", "_zp")]
            q, s, zp = (gs.Variable(n) for n in names)
            out = gs.Variable(t.name + SUFFIX, dtype=np.float32)
            self.fg.nodes.append(gs.Node("DynamicQuantizeLinear", names[0], inputs=[t], outputs=[q, s, zp]))
            self.fg.nodes.append(gs.Node("DequantizeLinear", names[1], inputs=[q, s, zp], outputs=[out]))
            self.cache[t.name] = out
        return self.cache[t.name]

    def add(self, template: gs.Node, inputs: list[gs.Tensor], ref: gs.Tensor) -> tuple[str, str]:
        out = gs.Variable(template.name + SUFFIX, dtype=np.float32)
        self.fg.nodes.append(gs.Node(template.op, template.name + SUFFIX, attrs=dict(template.attrs),
                                     domain=template.domain, inputs=inputs, outputs=[out]))
        for v in (ref, out):
            if not any(o is v for o in self.fg.outputs):
                self.fg.outputs.append(v)
        return ref.name, out.name


def shadow_model(builder: TrialBuilder, units: dict[str, str], qmodel: onnx.ModelProto | None):
    """(float model + shadow nodes, {node: (float output, shadow output)}, {node: why no proxy})."""

    fg = to_graph(builder.model)
    shadow = _Shadow(fg)
    fnodes = {n.name: n for n in fg.nodes}
    pairs: dict[str, tuple[str, str]] = {}
    skipped: dict[str, str] = {}
    if qmodel is None:  # dynamic: emulate it on the float graph
        shadow.reduce_range = builder.config.resolved_reduce_range()[0] if builder.config.reduce_range is None \
            else builder.config.reduce_range
        for name in units:
            node = fnodes[name]
            pairs[name] = shadow.add(node, [shadow.dynamic_input(node, i) for i in range(len(node.inputs))],
                                     node.outputs[0])
    else:
        qg = to_graph(qmodel)
        for qnode in qg.nodes:
            name, template, qinputs = _unit_of(qnode, units, fnodes)
            if name is None:
                continue
            inputs = [shadow.static_input(t) for t in qinputs]
            if name not in fnodes or any(i is None for i in inputs):
                skipped[name] = "its quantized inputs could not be traced back to the float graph"
                continue
            pairs[name] = shadow.add(template, inputs, fnodes[name].outputs[0])
    for domain in (to_graph(qmodel).import_domains if qmodel is not None else []) or []:
        if all(d.domain != domain.domain for d in fg.import_domains or []):
            fg.import_domains = list(fg.import_domains or []) + [domain]
    return to_model(fg, like=builder.model), pairs, skipped


def _unit_of(qnode: gs.Node, units: dict[str, str], fnodes: dict[str, gs.Node]
             ) -> tuple[str | None, gs.Node, list[gs.Tensor]]:
    """(unit, node to shadow, its quantized inputs) for a node of the quantized graph: the node itself, or for the
    Add that quantization.lower made of a hard activation, the float op on that Add's input (the op's DQ output,
    which the lowered form reads unchanged); (None, ...) for a node that is no unit."""
    base = lowered_from(qnode.name) if qnode.op == "Add" else None
    if base is not None and base in units and base in fnodes:
        return base, fnodes[base], list(qnode.inputs[:1])
    return (qnode.name if qnode.name in units else None), qnode, list(qnode.inputs)


def proxy_sqnr(builder: TrialBuilder, units: dict[str, str], qmodel: onnx.ModelProto | None, calib,
               samples: int | None = 256, batch_size: int = 32) -> tuple[dict[str, float], dict[str, str]]:
    """Per-node output SQNR (dB) when only that node is quantized: one pass over the calibration data per group of
    units whose float and shadow outputs of one sample fit in ``calibration_memory_mb`` (one group for most
    models; a large-map model at batch 1 would otherwise hold every unit's output twice at once)."""
    sqnr: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for group in unit_groups(builder, units, builder.config.calibration_memory_mb << 20):
        got, why = _proxy_group(builder, group, qmodel, calib, samples, batch_size)
        sqnr.update(got)
        skipped.update(why)
    return sqnr, skipped


def unit_groups(builder: TrialBuilder, units: dict[str, str], budget: int) -> list[dict[str, str]]:
    """``units`` in graph order, split where the float + shadow outputs of one sample (static shapes, dynamic
    dimensions 1) would pass ``budget`` bytes; one group when the shapes are unknown."""
    try:
        shapes = known_shapes(builder.model)
    except UserError:
        return [units]
    outputs = {n.name: n.output[0] for n in builder.model.graph.node if n.output}
    groups: list[dict[str, str]] = [{}]
    size = 0
    for name, op in units.items():
        shape = shapes.get(outputs.get(name, ""))
        need = 2 * 4 * math.prod(d for d in shape if isinstance(d, int) and d > 0) if shape else 0
        if groups[-1] and size + need > budget:
            groups.append({})
            size = 0
        groups[-1][name] = op
        size += need
    return [g for g in groups if g]


def _proxy_group(builder: TrialBuilder, units: dict[str, str], qmodel: onnx.ModelProto | None, calib,
                 samples: int | None, batch_size: int) -> tuple[dict[str, float], dict[str, str]]:
    model, pairs, skipped = shadow_model(builder, units, qmodel)
    if not pairs:
        return {}, skipped
    names = sorted({n for p in pairs.values() for n in p})
    session = make_session(model, SessionOptions(providers="cpu", opt_level="basic"))
    signal = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    batch_size = _proxy_batch(session, names, calib, model, batch_size, builder.config.calibration_memory_mb)
    for feeds in calib.limited(samples).batched(batch_size).bind(model_input_specs(model)).feeds():
        values = dict(zip(names, session.run(names, feeds)))
        for node, (ref, sh) in pairs.items():
            r = values[ref].astype(np.float64)
            signal[node] += float((r * r).sum())
            noise[node] += float(((r - values[sh]) ** 2).sum())
    sqnr = {n: (math.inf if noise[n] == 0 else (-math.inf if signal[n] == 0 else 10 * math.log10(signal[n] / noise[n])))
            for n in pairs}
    return sqnr, skipped


def _proxy_batch(session, names: list[str], calib, model: onnx.ModelProto, batch_size: int, memory_mb: int) -> int:
    """The largest batch (<= ``batch_size``) whose exposed float and shadow outputs fit in ``memory_mb``, measured
    on one sample (every quantizable node's output is held twice per batch)."""
    feeds = next(calib.limited(1).batched(1).bind(model_input_specs(model)).feeds())
    per_sample = sum(v.nbytes for v in session.run(names, feeds))
    fits = int(memory_mb * 2**20 // max(per_sample, 1))
    if fits < batch_size:
        log.info("sensitivity proxy: batch %d (one sample exposes %.1f MB)", max(fits, 1), per_sample / 2**20)
    return max(1, min(batch_size, fits))


# --- ranking ----------------------------------------------------------------------------------------------------
def analyze(builder: TrialBuilder, evaluator, tune, *, budget=None, score_choice=None,
            progress: Progress | None = None) -> dict[str, Any]:
    """Proxy for every unit, full-model metrics for the top_k; returns the ranking and the per-node records.

    ``score_choice(choice) -> Score`` lets the search record (and keep) the trials made here; ``budget()`` True
    stops the full-model measurements early."""
    score_choice = score_choice or (lambda choice: evaluator.score(builder.build(choice)[0]))
    units = builder.units()
    if builder.mode in WEIGHT_MODES:
        sqnr, no_proxy = weight_proxy(builder), {}
        proxy = "only this layer compressed: its output SQNR on the calibration inputs (X^T X), else its weight SQNR"
    else:
        # the proxy and "only this node" need every unit quantized: no latency placement there
        full = None if builder.mode == "dynamic" else builder.build_config(
            replace(builder.static_config({}), placement="fixed"))[0]
        sqnr, no_proxy = proxy_sqnr(builder, units, full, builder.calib, batch_size=tune.batch_size)
        proxy = "only this node quantized, output SQNR vs float (calibration data)"
    order = sorted(units, key=lambda n: (sqnr.get(n, math.inf), list(units).index(n)))
    base = score_choice({})
    records = {n: {"node": n, "op": units[n], "proxy_sqnr_db": _num(sqnr.get(n)), "proxy": proxy} for n in units}
    for n, why in no_proxy.items():
        records[n]["note"] = why
    measured = []
    with track(progress, "sensitivity (full-model metric per node)", len(order[: tune.top_k]), "nodes") as step:
        for n in order[: tune.top_k]:
            if budget is not None and budget():
                break
            only_float = score_choice({n: "float"})
            only_quant = evaluator.score(build_only(builder, n))
            records[n].update(drop_only_float=round(only_float.drop, 6),
                              gain_if_float=round(base.drop - only_float.drop, 6),
                              drop_only_quantized=round(only_quant.drop, 6))
            measured.append(n)
            step.advance()
    head = sorted(measured, key=lambda n: (-records[n]["gain_if_float"], -records[n]["drop_only_quantized"],
                                           order.index(n)))
    ranking = head + [n for n in order if n not in head]
    for i, n in enumerate(ranking):
        records[n]["rank"] = i + 1
    return {"metric": evaluator.config.metric, "full_int8": base.to_dict(), "ranking": ranking,
            "nodes": [records[n] for n in ranking], "top_k_measured": measured}


def weight_proxy(builder: TrialBuilder) -> dict[str, float]:
    """Weight modes: each layer's SQNR from the full compression's records (the layer is independent of the others:
    its output SQNR on the float model's calibration inputs, or its weight SQNR without calibration data)."""
    return {layer.node: (layer.output_sqnr_db if layer.output_sqnr_db is not None else layer.weight_sqnr_db)
            for layer in builder.weight_baseline().layers}


def build_only(builder: TrialBuilder, node: str) -> onnx.ModelProto:
    """The model with only ``node`` quantized."""

    return builder.build_config(replace(builder.config_for({}), include=(exact(node),), placement="fixed"))[0]


def _num(v: float | None) -> float | None:
    if v is None:
        return None
    return v if math.isfinite(v) else (1e9 if v > 0 else -1e9)


# --- pruning ----------------------------------------------------------------------------------------------------
def prune_sensitivity(model: onnx.ModelProto, calib, evaluator, ratio: float = 0.3,
                      max_groups: int = 64, budget=None) -> list[dict[str, Any]]:
    """Per prunable channel group: the goal metric's drop after pruning only that group at ``ratio``."""

    groups = analyze_groups(model)["groups"][:max_groups]
    owners: dict[str, int] = {}
    for g in groups:
        for n in g["nodes"]:
            owners[n] = owners.get(n, 0) + 1
    out = []
    for g in groups:
        if budget is not None and budget():
            break
        node = min(g["nodes"], key=lambda n: (owners[n], g["nodes"].index(n)))
        entry = {"group": g["id"], "channels": g["channels"], "node": node, "ratio": ratio}
        if owners[node] > 1:
            entry["note"] = f"every node of this group is in {owners[node]} groups: those are pruned together"
        config = PruneConfig(ratio=0.0, overrides={glob.escape(node): ratio})
        ctx = PassContext(calibration=calib)
        try:
            pruned, _ = apply_to_model(model, PruneChannelsPass(config), ctx)
        except Exception as e:  # deliberate: one group that cannot be cut is recorded, the analysis goes on
            entry["error"] = str(e).splitlines()[0]
            out.append(entry)
            continue
        info = ctx.require(PruneResult, "prune_sensitivity")
        score = evaluator.score(pruned)
        entry.update(drop=round(score.drop, 6), macs_kept=round(info.after.macs / max(info.before.macs, 1), 4))
        out.append(entry)
    return sorted(out, key=lambda e: -e.get("drop", -1.0))
