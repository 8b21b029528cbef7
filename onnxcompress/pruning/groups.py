"""Dependency analysis: which (tensor, axis) positions must be removed together (read-only; prune.py cuts).

Every position of every tracked (tensor, axis) slot is an element of a union-find. Starting from the output
channels of every layer with constant weights, the rules of ``rules.py`` relate the slots of each producer and
consumer; every relation unions the elements of each unit. A connected component is a *unit* (one channel, one
Flatten stride block, one conv group or one attention head, with all its copies through residual merges,
Concat offsets and parameters). Units touching the same slots form a :class:`ChannelGroup`. A component with a
blocked element (graph input/output, an op without a rule, an axis a rule cannot follow, an excluded node) is
never cut; it is reported as a :class:`BlockedGroup` with the reasons.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.ir.query import is_constant, node_matches
from onnxcompress.ir.shapes import known_shapes
from onnxcompress.ops.channel_rules import RULES, WEIGHT, Block, Ident, Info, Relation
from onnxcompress.unionfind import components

log = logging.getLogger(__name__)

Slot = tuple[str, int]  # (tensor name, axis)
MAX_REASONS = 4


@dataclass
class ChannelGroup:
    """Units that shrink together; ``units[u][slot]`` are the positions of unit ``u`` on that slot's axis."""

    id: int
    slots: tuple[Slot, ...]
    units: list[dict[Slot, np.ndarray]]
    roles: dict[Slot, str]
    params: frozenset[str]
    nodes: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.units)

    def activation_slots(self) -> list[Slot]:
        return [s for s in self.slots if s[0] not in self.params]

    def channels(self) -> int:
        """Channels on the group's first activation slot (or first slot)."""
        slots = self.activation_slots() or list(self.slots)
        return int(sum(len(u[slots[0]]) for u in self.units))

    def to_dict(self, max_slots: int = 12) -> dict:
        return {"id": self.id, "units": self.size, "channels": self.channels(), "nodes": list(self.nodes),
                "slots": [f"{t}:{a}" for t, a in self.slots[:max_slots]], "n_slots": len(self.slots)}


@dataclass
class BlockedGroup:
    id: int
    slots: tuple[Slot, ...]
    units: int
    reasons: tuple[str, ...]

    def to_dict(self, max_slots: int = 12) -> dict:
        return {"id": self.id, "units": self.units, "slots": [f"{t}:{a}" for t, a in self.slots[:max_slots]],
                "n_slots": len(self.slots), "reasons": list(self.reasons)}


@dataclass
class Analysis:
    groups: list[ChannelGroup]
    blocked: list[BlockedGroup]
    sizes: dict[Slot, int]
    info: Info

    def summary(self) -> str:
        units = sum(g.size for g in self.groups)
        return (f"{len(self.groups)} prunable groups ({units} units), {len(self.blocked)} blocked groups"
                + (f" (e.g. {self.blocked[0].reasons[0]})" if self.blocked and self.blocked[0].reasons else ""))

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "groups": [g.to_dict() for g in self.groups],
                "blocked": [b.to_dict() for b in self.blocked]}


@dataclass
class _State:
    """Slot positions (elements), the relations between them (edges, joined into components at the end) and
    the worklist of slots to visit."""

    base: dict[Slot, int] = field(default_factory=dict)
    tensors: dict[str, gs.Tensor] = field(default_factory=dict)
    elem_slot: list[int] = field(default_factory=list)
    elem_pos: list[int] = field(default_factory=list)
    size: int = 0
    edges: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    reasons: dict[int, list[str]] = field(default_factory=dict)
    roles: dict[Slot, str] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    queue: deque = field(default_factory=deque)
    seen: set = field(default_factory=set)

    def roots(self) -> np.ndarray:
        """The component root (smallest element) of every element."""
        a = np.concatenate([e[0] for e in self.edges]) if self.edges else np.zeros(0, np.int64)
        b = np.concatenate([e[1] for e in self.edges]) if self.edges else np.zeros(0, np.int64)
        return components(self.size, a, b)


def _shape_info(graph: gs.Graph, input_shapes: dict[str, list[int]] | None = None,
                sample: dict[str, np.ndarray] | None = None) -> Info:
    """Static shapes with dynamic input dims from ``input_shapes`` (else 1), completed by one run on ``sample``
    where static inference cannot follow the graph."""
    return Info(known_shapes(to_model(graph), input_shapes, sample))


def first_sample(data) -> dict[str, np.ndarray] | None:
    """The first calibration sample (a batch of one), or None without data."""
    return None if data is None else next(iter(data.limited(1)), None)


def input_shapes_from_data(graph: gs.Graph, data) -> dict[str, list[int]]:
    """Concrete input shapes (batch 1) from the first calibration sample, for models with dynamic dims."""
    first = first_sample(data) or {}
    out = {}
    for t in graph.inputs:  # the sample is one batch of one on each input's own batch axis (RNN state: axis 1)
        if t.name in first and t.shape is not None and 0 < len(t.shape) == np.ndim(first[t.name]):
            seen = [int(d) for d in np.shape(first[t.name])]
            out[t.name] = [d if isinstance(d, int) and d > 0 else v for d, v in zip(t.shape, seen)]
    return out


def _subgraph_names(graph: gs.Graph) -> set[str]:
    names: set[str] = set()
    for node in graph.nodes:
        for value in node.attrs.values():
            subs = value if isinstance(value, list) else [value]
            for sub in subs:
                if isinstance(sub, gs.Graph):
                    names |= {t.name for n in sub.nodes for t in n.inputs} | _subgraph_names(sub)
    return names


def _units(roots: np.ndarray, slot_of: np.ndarray, pos_of: np.ndarray) -> dict[int, dict[int, np.ndarray]]:
    """root -> {slot index: sorted positions} for every component (one numpy sort, then one slice per unit)."""
    if not len(roots):
        return {}
    order = np.lexsort((pos_of, slot_of, roots))
    r, sl = roots[order], slot_of[order]
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    ends = np.r_[starts[1:], len(r)]
    cuts = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (sl[1:] != sl[:-1])])
    out: dict[int, dict[int, np.ndarray]] = {}
    bounds = cuts.tolist() + [len(r)]
    slot_list, root_list, sorted_pos = sl.tolist(), r.tolist(), pos_of[order]
    k = 0
    for b in ends.tolist():
        unit: dict[int, np.ndarray] = {}
        first = bounds[k]
        while bounds[k] < b:
            unit[slot_list[bounds[k]]] = sorted_pos[bounds[k]:bounds[k + 1]]
            k += 1
        out[root_list[first]] = unit
    return out


def _flat(positions: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All positions of a member, and how many each unit owns."""
    if isinstance(positions, Ident):
        return np.arange(positions.n, dtype=np.int64), np.ones(positions.n, dtype=np.int64)
    if not positions:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(positions).astype(np.int64), np.array([len(p) for p in positions], dtype=np.int64)


class _Analyzer:
    def __init__(self, graph: gs.Graph, info: Info, exclude: tuple[str, ...]):
        self.graph, self.info, self.exclude = graph, info, exclude
        self.st = _State()
        self.outputs = {t.name for t in graph.outputs}
        self.inputs = {t.name for t in graph.inputs}
        self.in_subgraphs = _subgraph_names(graph)

    # --- slots and elements ------------------------------------------------------------------------------------
    def register(self, t: gs.Tensor, axis: int) -> int | None:
        slot = (t.name, axis)
        if slot in self.st.base:
            return self.st.base[slot]
        shape = self.info.shape(t)
        if shape is None or axis >= len(shape):
            return None
        st, start = self.st, self.st.size
        st.base[slot], st.tensors[t.name] = start, t
        st.slots.append(slot)
        index = len(st.slots) - 1
        st.size += shape[axis]
        st.elem_slot.extend([index] * shape[axis])
        st.elem_pos.extend(range(shape[axis]))
        st.queue.append((t, axis))
        return start

    def block(self, t: gs.Tensor, axis: int, reason: str) -> None:
        start = self.register(t, axis)
        if start is None:
            return
        for e in range(start, start + self.info.shape(t)[axis]):
            self.st.reasons.setdefault(e, []).append(reason)

    def relate(self, rel: Relation) -> None:
        units, ids = [], []
        for m in rel.members:
            start = self.register(m.tensor, m.axis)
            size = self.info.shape(m.tensor)[m.axis] if start is not None else 0
            flat, lengths = _flat(m.positions)
            if start is None or len(m.positions) != rel.n or (flat.size and (flat.max() >= size or flat.min() < 0)):
                for other in rel.members:
                    self.block(other.tensor, other.axis, f"inconsistent extent of '{m.tensor.name}' axis {m.axis}")
                return
            if m.role and (m.tensor.name, m.axis) not in self.st.roles:
                self.st.roles[(m.tensor.name, m.axis)] = m.role
            units.append(np.repeat(np.arange(rel.n), lengths))
            ids.append(start + flat)
        units_all, ids_all = np.concatenate(units), np.concatenate(ids)
        first = np.full(rel.n, -1, dtype=np.int64)
        order = np.argsort(units_all, kind="stable")
        uniq, at = np.unique(units_all[order], return_index=True)
        first[uniq] = ids_all[order][at]
        self.st.edges.append((first[units_all], ids_all))

    # --- the walk -----------------------------------------------------------------------------------------------
    def seed(self) -> None:
        for node in self.graph.nodes:
            if node.op in ("Conv", "ConvTranspose", "Gemm") and len(node.inputs) > 1 \
                    and is_constant(node.inputs[1]):
                self.register(node.outputs[0], 1)
            elif node.op == "MatMul" and is_constant(node.inputs[1]):
                rank = self.info.rank(node.outputs[0])
                if rank and rank >= 2:
                    self.register(node.outputs[0], rank - 1)

    def run(self) -> None:
        self.seed()
        while self.st.queue:
            t, axis = self.st.queue.popleft()
            self.visit(t, axis)

    def visit(self, t: gs.Tensor, axis: int) -> None:
        is_param = is_constant(t)
        if not is_param:
            if t.name in self.inputs:
                self.block(t, axis, f"'{t.name}' is a graph input")
            if t.name in self.outputs:
                self.block(t, axis, f"'{t.name}' is a graph output")
            if t.name in self.in_subgraphs:
                self.block(t, axis, f"'{t.name}' is used inside a subgraph")
            for producer in t.inputs:
                self.apply(producer, t, axis)
        for consumer in t.outputs:
            self.apply(consumer, t, axis)

    def excluded(self, node: gs.Node) -> str | None:
        return next((p for p in self.exclude if node_matches(p, node.name, node.op)), None)

    def apply(self, node: gs.Node, t: gs.Tensor, axis: int) -> None:
        key = (id(node), t.name, axis)
        if key in self.st.seen or node.op == "Constant":
            return
        self.st.seen.add(key)
        pattern = self.excluded(node)
        if pattern is not None and t in node.outputs:
            self.block(t, axis, f"'{node.name}' is excluded (pattern '{pattern}')")
            return
        rule = RULES.lookup(node.op, node.domain, self.graph.opset)
        if rule is None:
            self.block(t, axis, f"no pruning rule for op {node.domain + '.' if node.domain else ''}{node.op} "
                                f"('{node.name}')")
            return
        matched = False
        for item in rule(node, t, axis, self.info):
            if isinstance(item, Block):
                self.block(item.tensor, item.axis, item.reason)
                matched |= item.tensor is t
            elif any(m.tensor is t and m.axis == axis for m in item.members):
                self.relate(item)
                matched = True
        if not matched:
            self.block(t, axis, f"{node.op} '{node.name}' does not map axis {axis} of '{t.name}'")

    # --- results ------------------------------------------------------------------------------------------------
    def collect(self) -> Analysis:
        st = self.st
        roots = st.roots()
        bad: dict[int, list[str]] = {}
        for e, reasons in sorted(st.reasons.items()):
            acc = bad.setdefault(int(roots[e]), [])
            acc.extend(r for r in reasons if r not in acc)
        units = _units(roots, np.asarray(st.elem_slot, np.int64), np.asarray(st.elem_pos, np.int64))
        by_sig: dict[tuple, list[int]] = {}
        for r in sorted(units):
            by_sig.setdefault((r in bad, tuple(units[r])), []).append(r)
        groups, blocked = [], []
        for (is_bad, sig), rs in sorted(by_sig.items(), key=lambda kv: min(kv[1])):
            slots = tuple(st.slots[i] for i in sig)
            if is_bad:
                reasons = []
                for r in rs:
                    reasons.extend(x for x in bad[r] if x not in reasons)
                blocked.append(BlockedGroup(len(blocked), slots, len(rs), tuple(reasons[:MAX_REASONS])))
            else:
                groups.append(self._group(len(groups), slots, [units[r] for r in rs]))
        sizes = {slot: self.info.shape(st.tensors[slot[0]])[slot[1]] for slot in st.slots}
        return Analysis(groups, blocked, sizes, self.info)

    def _group(self, gid: int, slots: tuple[Slot, ...], units: list[dict[int, np.ndarray]]) -> ChannelGroup:
        st = self.st
        out = [{st.slots[i]: pos for i, pos in unit.items()} for unit in units]
        params = frozenset(s[0] for s in slots if is_constant(st.tensors[s[0]]))
        nodes: set[str] = set()
        for name, axis in slots:
            t = st.tensors[name]
            if name in params:
                if st.roles.get((name, axis)) == WEIGHT:
                    nodes |= {n.name for n in t.outputs}
            else:
                nodes |= {n.name for n in t.inputs}
        roles = {s: st.roles[s] for s in slots if s in st.roles}
        return ChannelGroup(gid, slots, out, roles, params, tuple(sorted(nodes)))


def analyze(graph: gs.Graph, exclude: tuple[str, ...] = (), info: Info | None = None) -> Analysis:
    """Channel groups of ``graph`` (not modified)."""
    analyzer = _Analyzer(graph, info or _shape_info(graph), tuple(exclude))
    analyzer.run()
    result = analyzer.collect()
    log.debug("prune analysis: %s", result.summary())
    return result


def analyze_groups(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None) -> dict:
    """Prunable and blocked channel groups of a model, JSON-ready (for ``onnxcompress inspect``)."""

    graph = to_graph(model)
    return analyze(graph, info=_shape_info(graph, input_shapes)).to_dict()
