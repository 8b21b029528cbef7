"""How channel indices flow through each op: a declarative registry keyed by (domain, op type, opset range).

A rule looks at one node and returns :class:`Relation` s: each relation is a unit index space of size ``n`` and,
for every (tensor, axis) slot it touches, the positions on that axis that belong to each unit. Everything in one
unit must be removed together (Torch-Pruning's dependency model, on ONNX tensors). Position lists may be empty for
a unit (a Concat input owns only its own range) or hold several positions (Flatten strides, attention heads,
conv groups). A rule that cannot follow an axis returns a :class:`Block` with the reason instead of guessing.

Rules are pure: they read static shapes and constants through :class:`Info` and never touch the graph. The
matching ``channel_fixups.FIXUPS`` rewrite the node attributes / shape constants that encode a channel count after a cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_shape, constant_value, is_constant
from onnxcompress.ops.registry import OpRegistry

#: Roles of parameter slots (used by the importance criteria).
WEIGHT, BN_SCALE = "weight", "bn_scale"


@dataclass
class Member:
    tensor: gs.Tensor
    axis: int
    positions: Sequence[np.ndarray]  # per unit
    role: str | None = None


@dataclass
class Relation:
    n: int
    members: list[Member] = field(default_factory=list)

    def add(self, tensor: gs.Tensor, axis: int, positions: Sequence[np.ndarray], role: str | None = None) -> Relation:
        self.members.append(Member(tensor, axis, positions, role))
        return self


@dataclass
class Block:
    tensor: gs.Tensor
    axis: int
    reason: str


class Info:
    """Static shapes (batch dims set to 1) and constants of the graph being analysed."""

    def __init__(self, shapes: dict[str, tuple]):
        self.shapes = shapes

    def shape(self, t: gs.Tensor) -> tuple | None:
        const = constant_shape(t)
        if const is not None:
            return const
        s = self.shapes.get(t.name)
        if s is None or not all(isinstance(d, int) and d > 0 for d in s):
            return None
        return tuple(s)

    def rank(self, t: gs.Tensor) -> int | None:
        const = constant_shape(t)
        if const is not None:
            return len(const)
        s = self.shapes.get(t.name)
        return None if s is None else len(s)


class Ident(Sequence):
    """Unit u owns position u: the common case, kept symbolic so a wide layer relates in one numpy step."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [np.array([u], dtype=np.int64) for u in range(self.n)[i]]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return np.array([i % self.n], dtype=np.int64)


def ident(n: int) -> Ident:
    return Ident(n)


def blocks(width: int, n: int, start: int = 0) -> list[np.ndarray]:
    """Unit u owns positions [start + u*width, start + (u+1)*width)."""
    return [np.arange(start + u * width, start + (u + 1) * width, dtype=np.int64) for u in range(n)]


def _present(t) -> bool:
    return t is not None and not (isinstance(t, gs.Variable) and not t.name)


def _int_list(t) -> list[int] | None:
    v = constant_value(t) if _present(t) else None
    return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]


Result = list  # list[Relation | Block]
Rule = Callable[[gs.Node, gs.Tensor, int, Info], Result]


# --- elementwise (unary, binary with broadcasting, variadic) -----------------------------------------------------
def elementwise(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    """Positionwise ops: an axis maps to the same (right-aligned) axis of every input and output."""
    out_rank = info.rank(node.outputs[0])
    out_shape = info.shape(node.outputs[0])
    if out_rank is None or out_shape is None:
        return [Block(t, axis, f"{node.op} '{node.name}': unknown output shape")]
    rank = info.rank(t)
    out_axis = axis + (out_rank - rank) if t in node.inputs else axis
    n = out_shape[out_axis]
    rel = Relation(n)
    for o in node.outputs:
        if _present(o) and info.rank(o) == out_rank:
            rel.add(o, out_axis, ident(n))
    for i in node.inputs:
        if not _present(i):
            continue
        shape, r = info.shape(i), info.rank(i)
        ax = out_axis - (out_rank - r) if r is not None else -1
        if r is not None and ax < 0:
            continue
        if shape is None:
            return [Block(t, axis, f"{node.op} '{node.name}': input '{i.name}' has an unknown shape")]
        if shape[ax] == n:
            rel.add(i, ax, ident(n))
        elif shape[ax] != 1:
            return [Block(t, axis, f"{node.op} '{node.name}': '{i.name}' does not broadcast on axis {ax}")]
    return [rel]


def batch_norm(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    if len([o for o in node.outputs if o.outputs]) > 1:
        return [Block(t, axis, f"BatchNormalization '{node.name}' in training mode")]
    x, y = node.inputs[0], node.outputs[0]
    axis = axis if t is x or t is y else 1  # a parameter's axis 0 is the data's channel axis
    if axis != 1:
        return elementwise_pair(x, y, axis, info)
    n = info.shape(x)[1] if info.shape(x) else None
    if n is None:
        return [Block(t, axis, f"BatchNormalization '{node.name}': unknown channel count")]
    rel = Relation(n).add(x, 1, ident(n)).add(y, 1, ident(n))
    for k, p in enumerate(node.inputs[1:5]):
        rel.add(p, 0, ident(n), BN_SCALE if k == 0 else None)
    return [rel]


def elementwise_pair(x: gs.Tensor, y: gs.Tensor, axis: int, info: Info) -> Result:
    shape = info.shape(x) or info.shape(y)
    if shape is None:
        return [Block(x, axis, f"unknown shape of '{x.name}'")]
    return [Relation(shape[axis]).add(x, axis, ident(shape[axis])).add(y, axis, ident(shape[axis]))]


def instance_norm(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    axis = axis if t is node.inputs[0] or t is node.outputs[0] else 1
    if axis != 1:
        return [Block(t, axis, f"InstanceNormalization '{node.name}' normalizes over axis {axis}")]
    x, y = node.inputs[0], node.outputs[0]
    n = info.shape(x)[1] if info.shape(x) else None
    if n is None:
        return [Block(t, axis, f"InstanceNormalization '{node.name}': unknown channel count")]
    return [Relation(n).add(x, 1, ident(n)).add(y, 1, ident(n))
            .add(node.inputs[1], 0, ident(n), BN_SCALE).add(node.inputs[2], 0, ident(n))]


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def reduce_over(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    """Softmax / LayerNormalization / LpNormalization style: fine unless the axis is one that is reduced over."""
    if len([o for o in node.outputs if o.outputs]) > 1:
        return [Block(t, axis, f"{node.op} '{node.name}': extra outputs are used")]
    rank = info.rank(node.inputs[0])
    default = -1 if node.op in ("LayerNormalization", "Softmax", "LogSoftmax", "Hardmax", "LpNormalization") else 1
    start = _norm_axis(int(node.attrs.get("axis", default)), rank)
    reduced = range(start, rank) if node.op == "LayerNormalization" else [start]
    if axis in reduced:
        return [Block(t, axis, f"{node.op} '{node.name}' normalizes over axis {axis}: removing channels changes it")]
    rel = elementwise_pair(node.inputs[0], node.outputs[0], axis, info)
    if node.op == "LayerNormalization" and isinstance(rel[0], Relation):
        for p in node.inputs[1:3]:  # scale/bias have the normalized shape, so they never carry this axis
            if _present(p) and info.rank(p) and info.rank(p) > rank - start:
                return [Block(t, axis, f"LayerNormalization '{node.name}': scale broadcasts over axis {axis}")]
    return rel


def pooling(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    if len([o for o in node.outputs if o.outputs]) > 1:
        return [Block(t, axis, f"{node.op} '{node.name}': indices output is used")]
    if axis != 1:
        return [Block(t, axis, f"{node.op} '{node.name}' pools over axis {axis}")]
    return elementwise_pair(node.inputs[0], node.outputs[0], 1, info)


def reduce_op(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    """ReduceMean/ReduceSum/...: follow axes that are not reduced (keepdims=0 shifts them)."""
    x, y = node.inputs[0], node.outputs[0]
    rank = info.rank(x)
    axes = _int_list(node.inputs[1]) if len(node.inputs) > 1 else node.attrs.get("axes")
    if axes is None:
        if node.attrs.get("noop_with_empty_axes", 0):
            return elementwise_pair(x, y, axis, info)
        return [Block(t, axis, f"{node.op} '{node.name}' reduces every axis")]
    axes = sorted(_norm_axis(int(a), rank) for a in axes)
    keep = int(node.attrs.get("keepdims", 1))
    in_axis = axis if t is x or keep else _unshift(axis, axes)
    if in_axis in axes:
        return [Block(t, axis, f"{node.op} '{node.name}' reduces over axis {in_axis}")]
    out_axis = in_axis if keep else in_axis - sum(a < in_axis for a in axes)
    n = info.shape(x)[in_axis] if info.shape(x) else None
    if n is None:
        return [Block(t, axis, f"{node.op} '{node.name}': unknown shape")]
    return [Relation(n).add(x, in_axis, ident(n)).add(y, out_axis, ident(n))]


def _unshift(out_axis: int, removed: list[int]) -> int:
    """The input axis that lands on ``out_axis`` after the (sorted) ``removed`` axes are dropped."""
    a = out_axis
    for r in removed:
        if r <= a:
            a += 1
    return a


# --- layers with weights -----------------------------------------------------------------------------------------
def conv(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    """Conv: W [Cout, Cin/G, k...]. G == 1: in <-> W axis 1, out <-> W axis 0 <-> bias. G > 1 (grouped and
    depthwise): whole conv groups are the units (in and out channels of a group go together; ``group`` shrinks)."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    b = node.inputs[2] if len(node.inputs) > 2 and _present(node.inputs[2]) else None
    transpose = node.op == "ConvTranspose"
    wshape = info.shape(w)
    if wshape is None or not is_constant(w):
        return [Block(t, axis, f"{node.op} '{node.name}': weight is not a constant")]
    groups = int(node.attrs.get("group", 1))
    valid = {(id(x), 1), (id(y), 1), (id(w), 0), (id(b), 0)} | ({(id(w), 1)} if groups == 1 else set())
    if (id(t), axis) not in valid:
        return [Block(t, axis, f"{node.op} '{node.name}' mixes axis {axis} of '{t.name}'")]
    in_w_axis, out_w_axis = (0, 1) if transpose else (1, 0)
    if groups == 1:
        cin, cout = wshape[in_w_axis], wshape[out_w_axis]
        rin = Relation(cin).add(x, 1, ident(cin)).add(w, in_w_axis, ident(cin), WEIGHT)
        rout = Relation(cout).add(y, 1, ident(cout)).add(w, out_w_axis, ident(cout), WEIGHT)
        if b is not None:
            rout.add(b, 0, ident(cout))
        return [rin, rout]
    xs, ys = info.shape(x), info.shape(y)
    if xs is None or ys is None:
        return [Block(t, axis, f"{node.op} '{node.name}': unknown shape")]
    cin_g, cout_g = xs[1] // groups, ys[1] // groups
    rel = Relation(groups).add(x, 1, blocks(cin_g, groups)).add(y, 1, blocks(cout_g, groups))
    rel.add(w, 0, blocks(cin_g if transpose else cout_g, groups), WEIGHT)
    if b is not None:
        rel.add(b, 0, blocks(cout_g, groups))
    return [rel]


def gemm(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    a, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    c = node.inputs[2] if len(node.inputs) > 2 and _present(node.inputs[2]) else None
    ta, tb = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    ash, wsh, ysh = info.shape(a), info.shape(w), info.shape(y)
    if ash is None or wsh is None or ysh is None:
        return [Block(t, axis, f"Gemm '{node.name}': unknown shape")]
    k, n = ash[0 if ta else 1], ysh[1]
    role_a, role_w = (None, WEIGHT) if is_constant(w) else (None, None)
    rk = Relation(k).add(a, 0 if ta else 1, ident(k), role_a).add(w, 1 if tb else 0, ident(k), role_w)
    rn = Relation(n).add(y, 1, ident(n)).add(w, 0 if tb else 1, ident(n), role_w)
    if c is not None:
        cs = info.shape(c)
        if cs is None:
            return [Block(t, axis, f"Gemm '{node.name}': unknown bias shape")]
        if cs and cs[-1] == n:
            rn.add(c, len(cs) - 1, ident(n))
    if (t is a and axis != (0 if ta else 1)) or (t is y and axis != 1) or (c is not None and t is c and axis != info.rank(c) - 1):
        return [Block(t, axis, f"Gemm '{node.name}' does not map axis {axis} of '{t.name}'")]
    return [rk, rn]


def matmul(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    """Y[..., M, N] = A[..., M, K] @ B[..., K, N]: K couples A and B, M couples A and Y, N couples B and Y,
    batch axes couple all three (a size-1 broadcast side is left out)."""
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    ash, bsh, ysh = info.shape(a), info.shape(b), info.shape(y)
    if ash is None or bsh is None or ysh is None:
        return [Block(t, axis, f"MatMul '{node.name}': unknown shape")]
    if len(ash) < 2 or len(bsh) < 2:
        return [Block(t, axis, f"MatMul '{node.name}' with a 1-D operand")]
    ra, rb, ry = len(ash), len(bsh), len(ysh)
    role_a = WEIGHT if is_constant(a) else None
    role_b = WEIGHT if is_constant(b) else None
    k = ash[-1]
    rels = [Relation(k).add(a, ra - 1, ident(k), role_a).add(b, rb - 2, ident(k), role_b),
            Relation(ysh[-2]).add(a, ra - 2, ident(ysh[-2]), role_a).add(y, ry - 2, ident(ysh[-2])),
            Relation(ysh[-1]).add(b, rb - 1, ident(ysh[-1]), role_b).add(y, ry - 1, ident(ysh[-1]))]
    for yax in range(ry - 2):
        n = ysh[yax]
        rel = Relation(n).add(y, yax, ident(n))
        for op, sh, r in ((a, ash, ra), (b, bsh, rb)):
            ax = yax - (ry - r)
            if ax >= 0 and sh[ax] == n:
                rel.add(op, ax, ident(n))
        rels.append(rel)
    return rels


# --- layout ops --------------------------------------------------------------------------------------------------
def transpose(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    x, y = node.inputs[0], node.outputs[0]
    rank = info.rank(x)
    perm = list(node.attrs.get("perm", list(range(rank))[::-1]))
    in_axis = axis if t is x else perm[axis]
    shape = info.shape(x)
    if shape is None:
        return [Block(t, axis, f"Transpose '{node.name}': unknown shape")]
    n = shape[in_axis]
    return [Relation(n).add(x, in_axis, ident(n)).add(y, perm.index(in_axis), ident(n))]


def _regroup(src: gs.Tensor, s_shape: tuple, s_axis: int, dst: gs.Tensor, d_shape: tuple) -> Result:
    """Map axis ``s_axis`` of ``src`` onto ``dst`` through a reshape (identity, merge with following axes, or split
    into a leading axis and inner axes). Batch dims are 1 in the shapes, so leading products identify the axis."""
    lead = math.prod(s_shape[:s_axis])
    d_axis = next((i for i in range(len(d_shape)) if math.prod(d_shape[:i]) == lead and d_shape[i] != 1), None)
    if d_axis is None:
        return [Block(src, s_axis, f"reshape of '{src.name}' does not keep axis {s_axis}")]
    n_s, n_d = s_shape[s_axis], d_shape[d_axis]
    if n_s == n_d:
        return [Relation(n_s).add(src, s_axis, ident(n_s)).add(dst, d_axis, ident(n_s))]
    for end in range(s_axis + 1, len(s_shape) + 1):  # dst axis = src axes [s_axis, end) merged
        if math.prod(s_shape[s_axis:end]) == n_d and n_d > n_s:
            stride = n_d // n_s
            return [Relation(n_s).add(src, s_axis, ident(n_s)).add(dst, d_axis, blocks(stride, n_s))]
    for end in range(d_axis + 1, len(d_shape) + 1):  # src axis = dst axes [d_axis, end) split
        if math.prod(d_shape[d_axis:end]) == n_s and n_s > n_d:
            inner = n_s // n_d
            return [Relation(n_d).add(src, s_axis, blocks(inner, n_d)).add(dst, d_axis, ident(n_d))]
    return [Block(src, s_axis, f"reshape of '{src.name}' mixes axis {s_axis} with others")]


def reshape(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    x, y = node.inputs[0], node.outputs[0]
    xs, ys = info.shape(x), info.shape(y)
    if xs is None or ys is None:
        return [Block(t, axis, f"{node.op} '{node.name}': unknown shape")]
    if t is not x and t is not y:
        return [Block(t, axis, f"{node.op} '{node.name}': shape input")]
    if node.op == "Reshape":
        target = _int_list(node.inputs[1])
        if target is None:
            return [Block(t, axis, f"Reshape '{node.name}' has a computed (non-constant) shape")]
    result = _regroup(x, xs, axis, y, ys) if t is x else _regroup(y, ys, axis, x, xs)
    if node.op == "Reshape" and isinstance(result[0], Relation):
        out_axis = next(m.axis for m in result[0].members if m.tensor is y)
        in_axis = next(m.axis for m in result[0].members if m.tensor is x)
        if out_axis < len(target) and target[out_axis] == 0 and (in_axis != out_axis or xs[in_axis] != ys[out_axis]):
            return [Block(t, axis, f"Reshape '{node.name}' copies dim {out_axis} (0) from a different axis")]
    return result


def flatten(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    x, y = node.inputs[0], node.outputs[0]
    xs = info.shape(x)
    if xs is None:
        return [Block(t, axis, f"Flatten '{node.name}': unknown shape")]
    k = _norm_axis(int(node.attrs.get("axis", 1)), len(xs))
    ys = (math.prod(xs[:k]), math.prod(xs[k:]))
    if t is x:
        if axis < k:
            return [Block(t, axis, f"Flatten '{node.name}' merges axis {axis} into the leading (batch) axis")]
        if math.prod(xs[k:axis]) != 1:
            return [Block(t, axis, f"Flatten '{node.name}': axis {axis} is not the outermost merged axis")]
        return _regroup(x, xs, axis, y, ys)
    if axis != 1:
        return [Block(t, axis, f"Flatten '{node.name}': leading axis")]
    return _regroup(y, ys, axis, x, xs)


def squeeze_like(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    """Squeeze / Unsqueeze: the axis keeps its extent and shifts by the inserted/removed size-1 axes."""
    x, y = node.inputs[0], node.outputs[0]
    axes = _int_list(node.inputs[1]) if len(node.inputs) > 1 else node.attrs.get("axes")
    xs, ys = info.shape(x), info.shape(y)
    if xs is None or ys is None:
        return [Block(t, axis, f"{node.op} '{node.name}': unknown shape")]
    if t is not x and t is not y:
        return [Block(t, axis, f"{node.op} '{node.name}': axes input")]
    if axes is None and node.op == "Unsqueeze":
        return [Block(t, axis, f"Unsqueeze '{node.name}' with computed axes")]
    big = ys if node.op == "Unsqueeze" else xs
    ones = sorted(_norm_axis(a, len(big)) for a in axes) if axes is not None else [i for i, d in enumerate(big) if d == 1]
    kept = [i for i in range(len(big)) if i not in ones]  # big-axis index of each small axis
    big_t, small_t = (y, x) if node.op == "Unsqueeze" else (x, y)
    big_axis = axis if t is big_t else kept[axis]
    if big_axis in ones:
        return [Block(t, axis, f"{node.op} '{node.name}': size-1 axis")]
    n = big[big_axis]
    return [Relation(n).add(big_t, big_axis, ident(n)).add(small_t, kept.index(big_axis), ident(n))]


def concat(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    y = node.outputs[0]
    ys = info.shape(y)
    if ys is None:
        return [Block(t, axis, f"Concat '{node.name}': unknown shape")]
    k = _norm_axis(int(node.attrs["axis"]), len(ys))
    n = ys[axis]
    if axis != k:
        rel = Relation(n).add(y, axis, ident(n))
        for i in node.inputs:
            rel.add(i, axis, ident(n))
        return [rel]
    rel = Relation(n).add(y, k, ident(n))
    offset = 0
    for i in node.inputs:
        size = info.shape(i)[k] if info.shape(i) else None
        if size is None:
            return [Block(t, axis, f"Concat '{node.name}': unknown input shape")]
        rel.add(i, k, [np.array([p - offset]) if offset <= p < offset + size else np.zeros(0, np.int64)
                       for p in range(n)])
        offset += size
    return [rel]


def split(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    x = node.inputs[0]
    xs = info.shape(x)
    if xs is None:
        return [Block(t, axis, f"Split '{node.name}': unknown shape")]
    k = _norm_axis(int(node.attrs.get("axis", 0)), len(xs))
    n = xs[axis]
    rel = Relation(n).add(x, axis, ident(n))
    offset = 0
    for o in node.outputs:
        os_ = info.shape(o)
        if os_ is None:
            return [Block(t, axis, f"Split '{node.name}': unknown output shape")]
        if axis != k:
            rel.add(o, axis, ident(n))
            continue
        size = os_[k]
        rel.add(o, k, [np.array([p - offset]) if offset <= p < offset + size else np.zeros(0, np.int64)
                       for p in range(n)])
        offset += size
    return [rel]


def slice_(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    x, y = node.inputs[0], node.outputs[0]
    xs = info.shape(x)
    if xs is None or (t is not x and t is not y):
        return [Block(t, axis, f"Slice '{node.name}': unknown shape or parameter input")]
    window = slice_window(node, axis, xs)
    if isinstance(window, str):
        return [Block(t, axis, f"Slice '{node.name}': {window}")]
    n = xs[axis]
    if window is None:
        return [Relation(n).add(x, axis, ident(n)).add(y, axis, ident(n))]
    start, end = window
    return [Relation(n).add(x, axis, ident(n))
            .add(y, axis, [np.array([p - start]) if start <= p < end else np.zeros(0, np.int64) for p in range(n)])]


def slice_window(node: gs.Node, axis: int, xs: tuple) -> tuple[int, int] | str | None:
    """(start, end) of a step-1 Slice on ``axis``; None if the axis is not sliced; a reason string if unsupported."""
    starts, ends = _int_list(node.inputs[1]), _int_list(node.inputs[2])
    axes = _int_list(node.inputs[3]) if len(node.inputs) > 3 and _present(node.inputs[3]) else None
    steps = _int_list(node.inputs[4]) if len(node.inputs) > 4 and _present(node.inputs[4]) else None
    if starts is None or ends is None or (len(node.inputs) > 3 and _present(node.inputs[3]) and axes is None):
        return "computed starts/ends/axes"
    axes = [_norm_axis(a, len(xs)) for a in (axes if axes is not None else range(len(starts)))]
    if axis not in axes:
        return None
    i = axes.index(axis)
    if steps is not None and steps[i] != 1:
        return f"step {steps[i]} on axis {axis}"
    n = xs[axis]
    start = min(max(starts[i] + n if starts[i] < 0 else starts[i], 0), n)
    end = min(max(ends[i] + n if ends[i] < 0 else ends[i], 0), n)
    return start, max(end, start)


def gather(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    x, idx, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs, irank = info.shape(x), info.rank(idx)
    if xs is None or irank is None or t is idx:
        return [Block(t, axis, f"Gather '{node.name}': unknown shape or indices axis")]
    g = _norm_axis(int(node.attrs.get("axis", 0)), len(xs))
    in_axis = axis if t is x else (axis if axis < g else axis - irank + 1)
    if in_axis == g or (t is y and g <= axis < g + irank):
        return [Block(t, axis, f"Gather '{node.name}' selects along axis {g}")]
    out_axis = in_axis if in_axis < g else in_axis + irank - 1
    n = xs[in_axis]
    return [Relation(n).add(x, in_axis, ident(n)).add(y, out_axis, ident(n))]


def spatial_passthrough(node: gs.Node, t: gs.Tensor, axis: int, info: Info) -> Result:
    """Resize / Pad / DepthToSpace-free spatial ops: follow the channel axis when it is left alone."""
    x, y = node.inputs[0], node.outputs[0]
    if t is not x and t is not y:
        return [Block(t, axis, f"{node.op} '{node.name}': parameter input")]
    xs, ys = info.shape(x), info.shape(y)
    if xs is None or ys is None or xs[axis] != ys[axis]:
        return [Block(t, axis, f"{node.op} '{node.name}' changes axis {axis}")]
    if node.op == "Pad":
        pads = _int_list(node.inputs[1]) if len(node.inputs) > 1 else node.attrs.get("pads")
        if pads is None or (len(node.inputs) > 3 and _present(node.inputs[3])):
            return [Block(t, axis, f"Pad '{node.name}': computed pads or explicit axes")]
    if node.op == "Resize" and len(node.inputs) > 3 and _present(node.inputs[3]):
        return [Block(t, axis, f"Resize '{node.name}' with explicit sizes")]
    return elementwise_pair(x, y, axis, info)


ELEMENTWISE = [
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Gelu", "Mish", "Erf", "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Sin", "Cos", "Identity", "Dropout", "Cast", "ThresholdedRelu", "Not", "Add",
    "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less", "Greater", "And", "Or",
    "IsNaN", "IsInf",
]

#: (domain, op type, opset range) -> rule; every rule handles both the attribute and the input form of its
#: arguments (axes, split sizes, pads), so one entry covers every opset
RULES: OpRegistry[Rule] = OpRegistry("channel rules")
RULES.register_all(ELEMENTWISE, elementwise)
RULES.register("BatchNormalization", batch_norm)
RULES.register("InstanceNormalization", instance_norm)
RULES.register_all("LayerNormalization Softmax LogSoftmax Hardmax LpNormalization", reduce_over)
RULES.register_all("MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool GlobalLpPool", pooling)
RULES.register_all("ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare "
                   "ReduceLogSumExp", reduce_op)
RULES.register_all("Conv ConvTranspose", conv)
RULES.register("Gemm", gemm)
RULES.register("MatMul", matmul)
RULES.register("Transpose", transpose)
RULES.register("Reshape", reshape)
RULES.register("Flatten", flatten)
RULES.register_all("Squeeze Unsqueeze", squeeze_like)
RULES.register("Concat", concat)
RULES.register("Split", split)
RULES.register("Slice", slice_)
RULES.register("Gather", gather)
RULES.register_all("Resize Pad", spatial_passthrough)
