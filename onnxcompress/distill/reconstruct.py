"""Layer-wise reconstruction: refit a compressed (student) graph's weights to the original (teacher) graph.

For each reconstructable layer (Conv incl. grouped/depthwise, Gemm, MatMul with a constant weight) in topological
order: the student's *current* input to the layer (so errors do not compound) and the teacher's output at the
tensor of the same name (restricted to the kept channels) give a ridge-regularised least-squares problem for weight
and bias. Conv is solved via im2col over sampled output positions, per group. Memory is bounded: only X^T X and X^T Y
are accumulated over batches, never the activations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxcompress.errors import RecipeError
from onnxcompress.ir.graph import with_outputs
from onnxcompress.ir.query import initializer_map, unique_name
from onnxcompress.passes.base import PassContext

log = logging.getLogger(__name__)

RECONSTRUCTABLE = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class DistillConfig:
    """Reconstruction settings: relative ridge, samples and sampled conv positions per image."""

    ridge: float = 1e-3
    samples: int = 256
    positions: int = 64
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        if not self.ridge >= 0:
            raise RecipeError(f"ridge must be >= 0, got {self.ridge}", hint="use e.g. 1e-3 (relative to mean diag)")
        for key in ("samples", "positions", "batch_size"):
            if getattr(self, key) <= 0:
                raise RecipeError(f"{key} must be positive, got {getattr(self, key)}", hint="use a positive integer")


@dataclass
class Layer:
    node: onnx.NodeProto
    x_name: str
    y_name: str
    kept: np.ndarray | None  # kept teacher channel indices of y (None = all)
    axis: int  # channel axis of y


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _why_not(node: onnx.NodeProto, inits: dict, teacher_tensors: set[str]) -> str | None:
    if node.op_type not in RECONSTRUCTABLE:
        return f"{node.op_type} is not reconstructable"
    if len(node.input) < 2 or node.input[1] not in inits:
        return "weight is not a constant"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return "bias is not a constant"
    if node.output[0] not in teacher_tensors:
        return f"no teacher tensor named '{node.output[0]}'"
    if node.op_type == "Gemm" and _attr(node, "transA", 0):
        return "Gemm with transA=1"
    if node.op_type == "MatMul" and len(inits[node.input[1]].dims) != 2:
        return "MatMul weight is not 2-D"
    if node.op_type == "Conv" and _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return "Conv with auto_pad"
    return None


def _teacher_tensor_names(teacher: onnx.ModelProto) -> set[str]:
    names = {o for n in teacher.graph.node for o in n.output}
    return names | {i.name for i in teacher.graph.input}


def plan_layers(teacher: onnx.ModelProto, student: onnx.ModelProto, kept: dict[str, list[int]],
                ctx: PassContext) -> list[Layer]:
    """Reconstructable student layers from the first compressed one on; every skip recorded with its reason."""
    inits, t_inits = initializer_map(student), initializer_map(teacher)
    teacher_tensors = _teacher_tensor_names(teacher)
    layers, started = [], False
    for node in student.graph.node:
        if node.op_type not in RECONSTRUCTABLE:
            continue
        w = node.input[1] if len(node.input) > 1 else ""
        compressed = w not in t_inits or list(t_inits[w].dims) != list(inits.get(w, t_inits[w]).dims) \
            or any(i in kept for i in node.input[:1])
        started = started or compressed
        subject = node.name or node.output[0]
        if not started:
            ctx.decide("reconstruct", subject, "skipped", "unchanged and upstream of every compressed layer")
            continue
        reason = _why_not(node, inits, teacher_tensors)
        if reason:
            ctx.decide("reconstruct", subject, "skipped", reason)
            continue
        axis = 1 if node.op_type == "Conv" else -1
        idx = kept.get(node.output[0])
        layers.append(Layer(node, node.input[0], node.output[0], None if idx is None else np.asarray(idx), axis))
    return layers


# --- features ---------------------------------------------------------------------------------------------------
def _conv_patches(x: np.ndarray, node: onnx.NodeProto, positions: np.ndarray, kernel: list[int]) -> np.ndarray:
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
def _layer_rows(layer: Layer, x: np.ndarray, y: np.ndarray, cfg: DistillConfig, rng: np.random.Generator,
                w_shape: tuple[int, ...]):
    """(X rows, Y rows) for one batch; Conv rows are im2col patches at sampled output positions."""
    if layer.kept is not None:
        y = np.take(y, layer.kept, axis=layer.axis)
    if layer.node.op_type != "Conv":
        return x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    out_shape = y.shape[2:]
    pos = _conv_out_positions(x.shape[0], out_shape, cfg.positions, rng)
    patches = _conv_patches(x, layer.node, pos, list(w_shape[2:]))  # (N*P, Cin, k...)
    flat_y = y.reshape(y.shape[0], y.shape[1], -1)  # (N, Cout, HW)
    rows_y = np.take_along_axis(flat_y, pos[:, None, :], axis=2)  # (N, Cout, P)
    return patches, rows_y.transpose(0, 2, 1).reshape(-1, y.shape[1])


def _accumulate(layer: Layer, acc: _Accumulator, x_rows: np.ndarray, y_rows: np.ndarray, w_shape) -> None:
    if layer.node.op_type != "Conv":
        acc.add(0, x_rows, y_rows)
        return
    groups = acc.groups
    cin_g, cout_g = w_shape[1], w_shape[0] // groups
    for g in range(groups):
        xg = x_rows[:, g * cin_g : (g + 1) * cin_g].reshape(x_rows.shape[0], -1)
        acc.add(g, xg, y_rows[:, g * cout_g : (g + 1) * cout_g])


def _solved_weights(layer: Layer, acc: _Accumulator, w: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight in the layer's layout, bias) from the accumulated normal equations."""
    op = layer.node.op_type
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
    if op == "Gemm" and _attr(layer.node, "transB", 0):
        weight = weight.T
    return weight, bias


def _write_back(model: onnx.ModelProto, layer: Layer, weight: np.ndarray, bias: np.ndarray | None) -> None:
    inits = initializer_map(model)
    w_t = inits[layer.node.input[1]]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(w_t.data_type)
    w_t.CopyFrom(onnx.numpy_helper.from_array(weight.astype(dtype), w_t.name))
    node = next(n for n in model.graph.node if n.output[0] == layer.y_name)
    if node.op_type == "Gemm":  # the solve gives the effective weight and bias
        for a in node.attribute:
            if a.name in ("alpha", "beta"):
                a.f = 1.0
    if bias is None:
        return
    if len(node.input) > 2 and node.input[2]:
        b_t = inits[node.input[2]]
        shape = list(b_t.dims)
        b_t.CopyFrom(onnx.numpy_helper.from_array(bias.reshape(shape).astype(dtype), b_t.name))
    else:
        used = {t.name for t in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
        name = unique_name(node.input[1] + "_bias", used, sep="")
        model.graph.initializer.append(onnx.numpy_helper.from_array(bias.astype(dtype), name))
        while len(node.input) < 2:
            node.input.append("")
        node.input.append(name)





# --- driver -----------------------------------------------------------------------------------------------------
def _collect(teacher: onnx.ModelProto, student: onnx.ModelProto, layer: Layer, feeds_list, cfg: DistillConfig,
             w_shape) -> _Accumulator:
    from onnxcompress.runtime.session import SessionOptions, make_session, run

    opts = SessionOptions(providers="cpu", opt_level="basic")
    t_sess = make_session(with_outputs(teacher, [layer.y_name], keep_existing=False), opts)
    s_sess = make_session(with_outputs(student, [layer.x_name], keep_existing=False), opts)
    groups = int(_attr(layer.node, "group", 1)) if layer.node.op_type == "Conv" else 1
    acc = _Accumulator(groups, bias=layer.node.op_type != "MatMul")
    rng = np.random.default_rng(cfg.seed)
    for feeds in feeds_list:
        y = run(t_sess, feeds, [layer.y_name])[layer.y_name]
        x = run(s_sess, feeds, [layer.x_name])[layer.x_name]
        x_rows, y_rows = _layer_rows(layer, x, y, cfg, rng, w_shape)
        _accumulate(layer, acc, x_rows, y_rows, w_shape)
    return acc


def reconstruct(teacher: onnx.ModelProto, student: onnx.ModelProto, calib, config: DistillConfig = DistillConfig(),
                *, kept: dict[str, list[int]] | None = None, ctx: PassContext | None = None
                ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Refit the student's layers to the teacher; returns (new student, JSON-ready report section)."""
    from onnxcompress.data.inputs import load_input_data, model_input_specs

    ctx = ctx if ctx is not None else PassContext(seed=config.seed)
    out = onnx.ModelProto()
    out.CopyFrom(student)
    data = load_input_data(calib).batched(config.batch_size).limited(config.samples)
    feeds_list = list(data.bind(model_input_specs(student)).feeds())
    layers = plan_layers(teacher, out, dict(kept or {}), ctx)
    done = []
    for layer in layers:
        w = onnx.numpy_helper.to_array(initializer_map(out)[layer.node.input[1]])
        acc = _collect(teacher, out, layer, feeds_list, config, w.shape)
        weight, bias = _solved_weights(layer, acc, w, config.ridge)
        _write_back(out, layer, weight, bias)
        unknowns = acc.xtx[0].shape[0]
        note = f"{acc.rows} rows for {unknowns} unknowns per output"
        if acc.rows < unknowns:
            note += " (underdetermined: the ridge term decides; give more --samples)"
            log.warning("%s: %s", layer.y_name, note)
        done.append({"layer": layer.node.name or layer.y_name, "op": layer.node.op_type, "rows": acc.rows,
                     "unknowns": unknowns})
        ctx.decide("reconstruct", layer.node.name or layer.y_name, "reconstructed", note)
    skipped = [d.to_dict() for d in ctx.decisions if d.pass_name == "reconstruct" and d.action == "skipped"]
    return out, {"reconstructed": done, "skipped": skipped, "samples": len(data), "config": vars(config).copy()}
