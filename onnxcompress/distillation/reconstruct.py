"""Layer-wise reconstruction (a pass): refit a compressed (student) graph's weights to the original (teacher).

For each reconstructable layer (Conv incl. grouped/depthwise, Gemm, MatMul with a constant weight) in topological
order: the student's *current* input to the layer (so errors do not compound) and the teacher's output at the
tensor of the same name (restricted to the kept channels of a pruned tensor) give a ridge-regularised
least-squares problem for weight and bias. Conv is solved via im2col over sampled output positions, per group.
Memory is bounded: only X^T X and X^T Y are accumulated over batches, never the activations. The teacher comes
from the context (:class:`Teacher`), the kept channels from pruning (:class:`KeptChannels`, optional).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import model_input_specs
from onnxcompress.distillation.config import DistillConfig
from onnxcompress.distillation.result import DistillResult, LayerFit
from onnxcompress.errors import EmptyDataError, InputMismatchError, InternalError
from onnxcompress.ir.edit import Names, expose_outputs, extract
from onnxcompress.ir.query import constant_value, initializer_map
from onnxcompress.ir.subgraphs import all_tensors, subgraphs_of
from onnxcompress.ops.facts import trans_a, trans_b
from onnxcompress.passes.artifacts import KeptChannels, Teacher
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.passes.progress import track
from onnxcompress.runtime.session import SessionOptions, make_session, run

log = logging.getLogger(__name__)

RECONSTRUCTABLE = ("Conv", "Gemm", "MatMul")


@dataclass
class Layer:
    node: gs.Node
    x_name: str
    y_name: str
    kept: np.ndarray | None  # kept teacher channel indices of y (None = all)
    axis: int  # channel axis of y


def _attr(node: gs.Node, name: str, default: Any) -> Any:
    return node.attrs.get(name, default)


def _subject(node: gs.Node) -> str:
    return node.name or node.outputs[0].name


def _why_not(node: gs.Node, teacher_tensors: set[str]) -> str | None:
    if node.op not in RECONSTRUCTABLE:
        return f"{node.op} is not reconstructable"
    if len(node.inputs) < 2 or not isinstance(node.inputs[1], gs.Constant):
        return "weight is not a constant"
    if len(node.inputs) > 2 and node.inputs[2].name and not isinstance(node.inputs[2], gs.Constant):
        return "bias is not a constant"
    if node.outputs[0].name not in teacher_tensors:
        return f"no teacher tensor named '{node.outputs[0].name}'"
    if node.op == "Gemm" and trans_a(node):
        return "Gemm with transA=1"
    if node.op == "MatMul" and node.inputs[1].values.ndim != 2:
        return "MatMul weight is not 2-D"
    if node.op == "Conv" and _attr(node, "auto_pad", "NOTSET") not in (b"NOTSET", "NOTSET"):
        return "Conv with auto_pad"
    return None


def _teacher_tensor_names(teacher: onnx.ModelProto) -> set[str]:
    names = {o for n in teacher.graph.node for o in n.output}
    return names | {i.name for i in teacher.graph.input}


def plan_layers(teacher: onnx.ModelProto, graph: gs.Graph, kept: KeptChannels, ctx: PassContext,
                pass_name: str = "ReconstructPass") -> list[Layer]:
    """Reconstructable student layers from the first compressed one on; every skip recorded with its reason."""
    t_inits = initializer_map(teacher)
    teacher_tensors = _teacher_tensor_names(teacher)
    layers, started = [], False
    for node in graph.nodes:
        if node.op not in RECONSTRUCTABLE:
            continue
        w = node.inputs[1] if len(node.inputs) > 1 else None
        w_value = constant_value(w) if w is not None else None
        compressed = w is None or w.name not in t_inits or (
            w_value is not None and list(t_inits[w.name].dims) != list(w_value.shape)) \
            or any(i.name in kept.kept for i in node.inputs[:1])
        started = started or compressed
        if not started:
            ctx.decide(pass_name, _subject(node), "skipped", "unchanged and upstream of every compressed layer")
            continue
        reason = _why_not(node, teacher_tensors)
        if reason:
            ctx.decide(pass_name, _subject(node), "skipped", reason)
            continue
        axis = 1 if node.op == "Conv" else -1
        idx = kept.kept.get(node.outputs[0].name)
        layers.append(Layer(node, node.inputs[0].name, node.outputs[0].name,
                            None if idx is None else np.asarray(idx), axis))
    return layers


# --- features ---------------------------------------------------------------------------------------------------
def _conv_patches(x: np.ndarray, node: gs.Node, positions: np.ndarray, kernel: list[int]) -> np.ndarray:
    """im2col at the flat output positions ``positions`` (per image): (N*P, Cin, *kernel)."""
    nd = x.ndim - 2
    strides = list(_attr(node, "strides", [1] * nd))
    dil = list(_attr(node, "dilations", [1] * nd))
    pads = list(_attr(node, "pads", [0] * 2 * nd))
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    win = np.lib.stride_tricks.sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))
    win = win[(...,) + tuple(slice(None, None, d) for d in dil)]  # (N, C, H', W', k...)
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
    out_shape = win.shape[2 : 2 + nd]
    coords = np.unravel_index(positions, out_shape)
    n = x.shape[0]
    idx = (np.repeat(np.arange(n), positions.shape[1]),) + tuple(c.reshape(-1) for c in coords)
    moved = np.moveaxis(win, 1, 1 + nd)  # (N, H', W', C, k...)
    return moved[idx]  # (N*P, C, k...)


def _conv_out_positions(n: int, out_shape: tuple[int, ...], count: int, rng: np.random.Generator) -> np.ndarray:
    total = int(np.prod(out_shape))
    if total <= count:
        return np.tile(np.arange(total), (n, 1))
    return np.stack([rng.choice(total, size=count, replace=False) for _ in range(n)])


class _Accumulator:
    """X^T X and X^T Y per group, with a bias column appended to X when the layer has a bias."""

    def __init__(self, groups: int, bias: bool):
        self.groups, self.bias = groups, bias
        self.xtx: list[np.ndarray | None] = [None] * groups
        self.xty: list[np.ndarray | None] = [None] * groups
        self.rows = 0

    def add(self, g: int, x: np.ndarray, y: np.ndarray) -> None:
        x = x.astype(np.float64)
        if self.bias:
            x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
        xtx, xty = x.T @ x, x.T @ y.astype(np.float64)
        self.xtx[g] = xtx if self.xtx[g] is None else self.xtx[g] + xtx
        self.xty[g] = xty if self.xty[g] is None else self.xty[g] + xty
        if g == 0:
            self.rows += x.shape[0]

    def solve(self, g: int, ridge: float) -> np.ndarray:
        xtx, xty = self.xtx[g], self.xty[g]
        lam = ridge * max(float(np.mean(np.diag(xtx))), 1e-12)
        return np.linalg.solve(xtx + lam * np.eye(xtx.shape[0]), xty)


# --- one layer --------------------------------------------------------------------------------------------------
@dataclass
class _Targets:
    """The teacher's side of one layer's least-squares problem, per batch: the sampled Conv output positions (None
    for Gemm/MatMul, whose rows are all positions) and the target rows at them (kept channels only)."""

    positions: list[np.ndarray | None]
    rows: list[np.ndarray]


def _teacher_rows(layer: Layer, y: np.ndarray, cfg: DistillConfig, rng: np.random.Generator
                  ) -> tuple[np.ndarray | None, np.ndarray]:
    """(sampled positions, Y rows) of one batch of the teacher's output ``y``."""
    if layer.kept is not None:
        y = np.take(y, layer.kept, axis=layer.axis)
    if layer.node.op != "Conv":
        return None, y.reshape(-1, y.shape[-1])
    pos = _conv_out_positions(y.shape[0], y.shape[2:], cfg.positions, rng)
    flat_y = y.reshape(y.shape[0], y.shape[1], -1)  # (N, Cout, HW)
    rows_y = np.take_along_axis(flat_y, pos[:, None, :], axis=2)  # (N, Cout, P)
    return pos, rows_y.transpose(0, 2, 1).reshape(-1, y.shape[1])


def _student_rows(layer: Layer, x: np.ndarray, pos: np.ndarray | None, w_shape: tuple[int, ...]) -> np.ndarray:
    """X rows of one batch of the student's input ``x``: Conv rows are im2col patches at the teacher's positions."""
    if pos is None:
        return x.reshape(-1, x.shape[-1])
    return _conv_patches(x, layer.node, pos, list(w_shape[2:]))  # (N*P, Cin, k...)


def _accumulate(layer: Layer, acc: _Accumulator, x_rows: np.ndarray, y_rows: np.ndarray, w_shape) -> None:
    if layer.node.op != "Conv":
        acc.add(0, x_rows, y_rows)
        return
    groups = acc.groups
    cin_g, cout_g = w_shape[1], w_shape[0] // groups
    for g in range(groups):
        xg = x_rows[:, g * cin_g : (g + 1) * cin_g].reshape(x_rows.shape[0], -1)
        acc.add(g, xg, y_rows[:, g * cout_g : (g + 1) * cout_g])


def _solved_weights(layer: Layer, acc: _Accumulator, w: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight in the layer's layout, bias) from the accumulated normal equations."""
    op = layer.node.op
    if op == "Conv":
        cout_g = w.shape[0] // acc.groups
        new_w, new_b = np.empty(w.shape), np.empty(w.shape[0])
        for g in range(acc.groups):
            sol = acc.solve(g, ridge)  # (Cin_g*k + 1, Cout_g)
            new_w[g * cout_g : (g + 1) * cout_g] = sol[:-1].T.reshape((cout_g,) + w.shape[1:])
            new_b[g * cout_g : (g + 1) * cout_g] = sol[-1]
        return new_w, new_b
    sol = acc.solve(0, ridge)  # (K [+1], M)
    weight, bias = (sol[:-1], sol[-1]) if acc.bias else (sol, None)
    if op == "Gemm" and trans_b(layer.node):
        weight = weight.T
    return weight, bias


def _write_back(layer: Layer, weight: np.ndarray, bias: np.ndarray | None, names: Names) -> None:
    node = layer.node
    w = node.inputs[1]
    dtype = w.values.dtype
    w.values = weight.astype(dtype)
    if node.op == "Gemm":  # the solve gives the effective weight and bias
        for key in ("alpha", "beta"):
            if key in node.attrs:
                node.attrs[key] = 1.0
    if bias is None:
        return
    if len(node.inputs) > 2 and node.inputs[2].name:
        b = node.inputs[2]
        b.values = bias.reshape(b.values.shape).astype(dtype)
    else:
        const = gs.Constant(names.tensor(w.name + "_bias", sep=""), bias.astype(dtype))
        while len(node.inputs) < 2:
            node.inputs.append(gs.Variable(""))
        node.inputs.append(const)


# --- the teacher: one pass per window of layers whose target rows fit in memory ---------------------------------
_OPTS = SessionOptions(providers="cpu", opt_level="basic")


def _teacher_session(teacher: onnx.ModelProto, layers: list[Layer]):
    names = list(dict.fromkeys(layer.y_name for layer in layers))
    return make_session(expose_outputs(teacher, names, keep_existing=False), _OPTS), names


def _windows(teacher: onnx.ModelProto, layers: list[Layer], feeds_list, cfg: DistillConfig,
             shapes: dict[int, tuple[int, ...]]) -> tuple[list[list[Layer]], Any]:
    """Consecutive layers whose target rows over all batches fit in ``cfg.memory_mb`` together (at least one layer
    each); sized on the first batch, so a model whose rows all fit takes one teacher pass. Also returns the session
    that sized them (it exposes every layer: the single window's session when there is one)."""
    sess, names = _teacher_session(teacher, layers)
    first = run(sess, feeds_list[0], names)
    budget, windows, used = cfg.memory_mb * 2**20, [[]], 0
    for layer in layers:
        _check_channels(layer, first[layer.y_name], shapes[id(layer)])
        _, rows = _teacher_rows(layer, first[layer.y_name], cfg, np.random.default_rng(cfg.seed))
        need = rows.nbytes * len(feeds_list)
        if windows[-1] and used + need > budget:
            windows.append([])
            used = 0
        windows[-1].append(layer)
        used += need
    return windows, sess


def _targets(teacher: onnx.ModelProto, window: list[Layer], feeds_list, cfg: DistillConfig,
             shapes: dict[int, tuple[int, ...]], session: Any = None) -> dict[int, _Targets]:
    """The target rows of every layer of ``window``, from one teacher pass over the data (through ``session`` when
    given: one that exposes exactly the window's outputs)."""
    sess, names = (session, list(dict.fromkeys(layer.y_name for layer in window))) if session is not None \
        else _teacher_session(teacher, window)
    rngs = {id(layer): np.random.default_rng(cfg.seed) for layer in window}  # one position stream per layer
    out = {id(layer): _Targets([], []) for layer in window}
    for feeds in feeds_list:
        ys = run(sess, feeds, names)
        for layer in window:
            _check_channels(layer, ys[layer.y_name], shapes[id(layer)])
            pos, rows = _teacher_rows(layer, ys[layer.y_name], cfg, rngs[id(layer)])
            out[id(layer)].positions.append(pos)
            out[id(layer)].rows.append(rows.astype(np.float32))
    return out


# --- the student: one pass per wave of layers whose inputs no earlier layer of the wave feeds -------------------
def _upstream_layers(graph: gs.Graph, layers: list[Layer]) -> list[int]:
    """For each layer, the bit set of the layers (by index) whose outputs its input depends on: one sweep over the
    nodes, which a valid ONNX graph lists in topological order."""
    bit = {id(layer.node): 1 << i for i, layer in enumerate(layers)}
    produced = {t.name: node for node in graph.nodes for t in node.outputs}
    deps: dict[str, int] = {}
    for node in graph.nodes:
        mask = bit.get(id(node), 0)
        for name in _node_inputs(node, produced):
            mask |= deps.get(name, 0)
        for t in node.outputs:
            deps[t.name] = mask
    return [deps.get(layer.x_name, 0) for layer in layers]


def _node_inputs(node: gs.Node, produced: dict[str, gs.Node]) -> list[str]:
    """A node's inputs, with the outer tensors its subgraphs read."""
    names = [t.name for t in node.inputs if t.name]
    for _, sub in subgraphs_of(node):
        names += [n for n in all_tensors(sub) if n in produced]
    return names


def _waves(indices: list[int], upstream: list[int]) -> list[list[int]]:
    """Consecutive layers none of whose inputs depend on an earlier layer of the same wave: one student pass gives
    all their inputs, exactly as refitting them one by one would see them (Q/K/V projections, inception branches)."""
    waves: list[list[int]] = []
    wave_bits = 0
    for i in indices:
        if waves and not upstream[i] & wave_bits:
            waves[-1].append(i)
        else:
            waves.append([i])
            wave_bits = 0
        wave_bits |= 1 << i
    return waves


class _Activations:
    """Student activations that are final: a wave's inputs depend only on layers already refit, so later waves can
    start from them instead of from the graph inputs (the stored values of all batches, within ``budget`` bytes;
    the oldest are dropped first, and a wave whose start is gone recomputes from the graph inputs)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.values: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, batches: list[np.ndarray]) -> None:
        size = sum(a.nbytes for a in batches)
        if name in self.values or size > self.budget:
            return
        while self.values and sum(a.nbytes for v in self.values.values() for a in v) + size > self.budget:
            del self.values[next(iter(self.values))]
        self.values[name] = batches

    def segment(self, graph: gs.Graph, outputs: list[str]) -> onnx.ModelProto:
        """The part of ``graph`` that computes ``outputs`` from the stored activations (and the graph inputs)."""
        return extract(graph, {n: v[0].dtype for n, v in self.values.items() if n not in outputs}, outputs)

    def feeds(self, names: list[str], feeds: dict[str, np.ndarray], b: int) -> dict[str, np.ndarray]:
        return {n: self.values[n][b] if n in self.values else feeds[n] for n in names}


def _fit_wave(wave: list[Layer], graph: gs.Graph, targets: dict[int, _Targets], feeds_list,
              shapes: dict[int, tuple[int, ...]], cache: _Activations) -> dict[int, _Accumulator]:
    """The normal equations of every layer of ``wave``, from one student pass over the data (from the stored
    activations on); the wave's inputs are stored for the waves after it."""
    names = list(dict.fromkeys(layer.x_name for layer in wave))
    sess = make_session(cache.segment(graph, names), _OPTS)
    inputs = [i.name for i in sess.get_inputs()]
    accs = {id(layer): _Accumulator(int(_attr(layer.node, "group", 1)) if layer.node.op == "Conv" else 1,
                                    bias=layer.node.op != "MatMul") for layer in wave}
    seen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for b, feeds in enumerate(feeds_list):
        xs = run(sess, cache.feeds(inputs, feeds, b), names)
        for layer in wave:
            t = targets[id(layer)]
            x_rows = _student_rows(layer, xs[layer.x_name], t.positions[b], shapes[id(layer)])
            _accumulate(layer, accs[id(layer)], x_rows, t.rows[b], shapes[id(layer)])
        for n in names:
            seen[n].append(xs[n])
    for n in names:
        cache.add(n, seen[n])
    return accs


def _out_channels(layer: Layer, w_shape: tuple[int, ...]) -> int:
    if layer.node.op == "Conv":
        return w_shape[0]
    if layer.node.op == "Gemm" and trans_b(layer.node):
        return w_shape[0]
    return w_shape[-1]


def _check_channels(layer: Layer, y: np.ndarray, w_shape: tuple[int, ...]) -> None:
    """The teacher's tensor (restricted to the kept channels) must have the student layer's output channels."""
    have = y.shape[layer.axis] if layer.kept is None else len(layer.kept)
    want = _out_channels(layer, w_shape)
    if have != want:
        raise InputMismatchError(
            f"'{layer.y_name}' has {have} channels in the teacher and {want} in the student, and no kept-channel "
            "record says which teacher channels the student kept",
            hint="prune with onnxcompress (the pruned model carries its record), or pass --kept PRUNE_REPORT.json "
                 "(the JSON of `prune --report`)")


def _check_inputs(teacher: onnx.ModelProto, graph: gs.Graph) -> None:
    t_io = [(i.name, onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in teacher.graph.input
            if i.name not in initializer_map(teacher)]
    s_io = [(t.name, np.dtype(t.dtype) if t.dtype is not None else None) for t in graph.inputs]
    if [n for n, _ in t_io] != [n for n, _ in s_io] or any(a != b for (_, a), (_, b) in zip(t_io, s_io)):
        raise InputMismatchError(f"teacher inputs {t_io} differ from student inputs {s_io}",
                                 hint="the student must be a compressed copy of the teacher with the same inputs")


class ReconstructPass(Pass):
    """Refit the student's layers to the teacher (see module docstring); leaves a :class:`DistillResult`."""

    def __init__(self, config: DistillConfig | None = None):
        self.config = config if config is not None else DistillConfig()

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        if ctx.calibration is None:
            raise EmptyDataError("reconstruction needs calibration data", hint="pass --calib DATA")
        _check_inputs(ctx.require(Teacher, self.name).model, graph)

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:

        cfg, teacher = self.config, ctx.require(Teacher, self.name).model
        assert ctx.calibration is not None
        data = ctx.calibration.batched(cfg.batch_size).limited(cfg.samples)
        feeds_list = list(data.bind(model_input_specs(teacher)).feeds())
        layers = plan_layers(teacher, graph, ctx.get(KeptChannels) or KeptChannels(), ctx, self.name)
        passes = {"teacher_passes": 0, "student_passes": 0}
        done = self._refit(teacher, graph, layers, feeds_list, ctx, passes) if layers else []
        skipped = tuple((d.subject, d.reason) for d in ctx.decisions if d.pass_name == self.name
                        and d.action == "skipped")
        ctx.put(DistillResult(cfg, tuple(done), skipped, len(data)))
        return PassResult(graph, bool(done), {"reconstructed": len(done), "skipped": len(skipped), **passes})

    def _refit(self, teacher: onnx.ModelProto, graph: gs.Graph, layers: list[Layer], feeds_list,
               ctx: PassContext, passes: dict[str, int]) -> list[LayerFit]:
        """Teacher targets one window at a time; student inputs one wave at a time; each layer solved in order
        (``passes`` counts the passes over the data)."""
        cfg, names, done = self.config, Names(graph), []
        cache = _Activations(cfg.memory_mb * 2**20)
        shapes = {id(layer): tuple(layer.node.inputs[1].values.shape) for layer in layers}
        upstream, index = _upstream_layers(graph, layers), {id(layer): i for i, layer in enumerate(layers)}
        with track(ctx.progress, "reconstruct", len(layers), "layers") as step:
            windows, probe = _windows(teacher, layers, feeds_list, cfg, shapes)
            for window in windows:
                targets = _targets(teacher, window, feeds_list, cfg, shapes, probe if len(windows) == 1 else None)
                probe = None  # the teacher session is not held while the student passes run
                passes["teacher_passes"] += 1
                for wave in _waves([index[id(layer)] for layer in window], upstream):
                    members = [layers[i] for i in wave]
                    accs = _fit_wave(members, graph, targets, feeds_list, shapes, cache)
                    passes["student_passes"] += 1
                    for layer in members:
                        acc = accs[id(layer)]
                        weight, bias = _solved_weights(layer, acc, layer.node.inputs[1].values, cfg.ridge)
                        _write_back(layer, weight, bias, names)
                        done.append(_fit_record(layer, acc, ctx, self.name))
                        del targets[id(layer)]
                        step.advance()
        return done

    def ensures(self, graph: gs.Graph, ctx: PassContext) -> None:

        result = ctx.require(DistillResult, self.name)
        weights = {n.name: n for n in graph.nodes}
        for fit in result.reconstructed:
            node = weights.get(fit.layer)
            if node is not None and not np.isfinite(node.inputs[1].values).all():
                raise InternalError(f"reconstruction of {fit.layer} produced non-finite weights")


def _fit_record(layer: Layer, acc: _Accumulator, ctx: PassContext, pass_name: str) -> LayerFit:
    unknowns = acc.xtx[0].shape[0]
    note = f"{acc.rows} rows for {unknowns} unknowns per output"
    if acc.rows < unknowns:
        note += " (underdetermined: the ridge term decides; give more --samples)"
        log.warning("%s: %s", layer.y_name, note)
    ctx.decide(pass_name, _subject(layer.node), "reconstructed", note)
    return LayerFit(_subject(layer.node), layer.node.op, acc.rows, unknowns)
