"""Constant folding and small algebraic rewrites that let onnxruntime fuse (and the quantizer cover) more.

- :class:`FoldConstantsPass`: a node whose inputs are all constants (``Shape``: whose input shape is static) is
  evaluated with numpy and replaced by an initializer, for the ops in :data:`FOLDERS` only; a result larger than
  ``max_bytes`` that is also larger than the constants it consumes is not folded (the model never grows past the
  cap). ``Identity`` is bypassed; ``Div`` by a float constant becomes ``Mul`` by its reciprocal (the form ORT's
  Conv/MatMul scale fusions and our hard-swish matcher recognise), except the ``x / sqrt(2)`` feeding an Erf
  (ORT's GELU fusion needs the Div) and attention's ``scores / sqrt(d)`` before its Softmax (so does its
  Attention fusion).
- :class:`FoldBiasAddPass`: ``Conv -> Add(per-channel constant)`` becomes the Conv's bias (ORT does this for float
  graphs; for QDQ graphs the Add would stay a float island between two int8 kernels).
- :class:`RewriteHardSwishPass`: ``x * Clip(x + 3, 0, 6) / 6`` (and ``* (1/6)``) becomes
  ``x * HardSigmoid(x, 1/6, 0.5)``: two nodes instead of four, and a QLinearMul in a QDQ graph.
- :class:`FoldPadIntoConvPass`: an explicit zero ``Pad`` of the spatial axes before a Conv becomes the Conv's
  ``pads`` (in a QDQ graph the Pad would be a float round trip between two int8 Convs).

Every folded, rewritten or skipped node is recorded with ``ctx.decide``.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.errors import RecipeError
from onnxcompress.ir.edit import detach, fresh_name, replace_all_uses
from onnxcompress.ir.query import constant_value, is_constant, is_graph_output
from onnxcompress.ops.folders import FOLDERS, SHAPE_ONLY
from onnxcompress.passes.base import Pass, PassContext, PassResult

log = logging.getLogger(__name__)

#: never fold a result larger than this (and larger than the constants it consumes)
DEFAULT_MAX_BYTES = 1 << 20


class FoldConstantsPass(Pass):
    """Evaluate constant sub-graphs (registry :data:`FOLDERS`), bypass Identity, turn Div-by-constant into Mul."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, div_to_mul: bool = True):
        if int(max_bytes) < 0:
            raise RecipeError(f"max_bytes must be >= 0, got {max_bytes}", hint="e.g. 1048576 (1 MiB)")
        self.max_bytes = int(max_bytes)
        self.div_to_mul = bool(div_to_mul)

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        graph.toposort()
        stats = {"folded": 0, "identity_removed": 0, "div_to_mul": 0, "skipped": 0}
        for node in list(graph.nodes):
            if not node.outputs:
                continue
            if node.op == "Identity" and not is_constant(node.inputs[0]):
                key = "identity_removed" if self._bypass_identity(graph, node, ctx) else "skipped"
            elif node.op == "Div" and self.div_to_mul and _reciprocal_ok(node):
                key = "div_to_mul"
                self._div_to_mul(graph, node, ctx)
            else:
                key = self._fold(graph, node, ctx)
            if key:
                stats[key] += 1
        modified = any(stats[k] for k in ("folded", "identity_removed", "div_to_mul"))
        if modified:
            _detach_dead_constants(graph)
            graph.cleanup(remove_unused_node_outputs=False).toposort()
        return PassResult(graph, modified, stats)

    def _fold(self, graph: gs.Graph, node: gs.Node, ctx: PassContext) -> str | None:
        inputs = _constant_inputs(node)
        if inputs is None or node.op == "Constant" or node.domain not in (None, "", "ai.onnx"):
            return None
        folder = FOLDERS.lookup(node.op, node.domain, graph.opset)
        if folder is None:
            ctx.decide(self.name, _subject(node), "kept", f"no folding rule for {node.op}")
            return "skipped"
        reason = self._why_not(graph, node, inputs)
        if reason is None:
            try:
                value = np.asarray(folder(node, inputs))
            except Exception as e:  # a malformed constant sub-graph: leave it to the runtime, with the reason
                reason = f"numpy evaluation failed: {type(e).__name__}: {e}"
        if reason is None:
            reason = self._too_big(node, inputs, value)
        if reason is not None:
            ctx.decide(self.name, _subject(node), "kept", reason)
            return "skipped"
        _replace_output(node, gs.Constant(node.outputs[0].name, np.array(value, order="C")))
        ctx.decide(self.name, _subject(node), "folded", f"{node.op} -> constant {list(value.shape)} {value.dtype}")
        return "folded"

    def _why_not(self, graph: gs.Graph, node: gs.Node, inputs: list) -> str | None:
        if len(node.outputs) != 1:
            return f"{node.op} with {len(node.outputs)} outputs"
        if is_graph_output(graph, node.outputs[0]):
            return "its output is a graph output"
        return None

    def _too_big(self, node: gs.Node, inputs: list, value: np.ndarray) -> str | None:
        consumed = sum(i.nbytes for i in inputs if isinstance(i, np.ndarray) and node.op not in SHAPE_ONLY)
        if value.nbytes > self.max_bytes and value.nbytes > consumed:
            return f"result of {value.nbytes} bytes would grow the model (cap {self.max_bytes} bytes)"
        return None

    def _bypass_identity(self, graph: gs.Graph, node: gs.Node, ctx: PassContext) -> bool:
        x, out = node.inputs[0], node.outputs[0]
        if not is_graph_output(graph, out):
            replace_all_uses(out, x)
        elif x.inputs and not is_graph_output(graph, x) and x not in graph.inputs:
            producer = x.inputs[0]  # the producer writes the graph output directly
            replace_all_uses(x, out)
            producer.outputs[producer.outputs.index(x)] = out
        else:
            ctx.decide(self.name, _subject(node), "kept", "Identity between a graph input/output and a graph output")
            return False
        detach(node)
        ctx.decide(self.name, _subject(node), "removed", "Identity bypassed")
        return True

    def _div_to_mul(self, graph: gs.Graph, node: gs.Node, ctx: PassContext) -> None:
        c = constant_value(node.inputs[1])
        recip = np.asarray((1.0 / c.astype(np.float64)).astype(c.dtype))
        node.op = "Mul"
        node.inputs[1] = gs.Constant(fresh_name(node.inputs[1].name + "_reciprocal", graph.tensors()), recip)
        ctx.decide(self.name, _subject(node), "rewritten", "Div by a constant -> Mul by its reciprocal")


def _subject(node: gs.Node) -> str:
    return node.name or (node.outputs[0].name if node.outputs else node.op)


def _reciprocal_ok(node: gs.Node) -> bool:
    """Div(x, c): x computed at run time, c a finite non-zero float constant, and not the ``x / sqrt(2)`` of an
    Erf GELU (onnxruntime fuses ``Div -> Erf -> Add -> Mul -> Mul`` into Gelu/BiasGelu only with the Div)."""
    if is_constant(node.inputs[0]):
        return False
    if any(c.op == "Erf" for c in node.outputs[0].outputs) or _attention_scale(node):
        return False
    c = constant_value(node.inputs[1])
    return (c is not None and c.dtype.kind == "f" and c.size > 0 and bool(np.all(np.isfinite(c)))
            and bool(np.all(c != 0)))


def _attention_scale(node: gs.Node) -> bool:
    """``scores / sqrt(d)`` before the (mask Add and) Softmax of self-attention: onnxruntime's Attention fusion
    matches the Div, not a Mul by the reciprocal."""
    for c in node.outputs[0].outputs:
        if c.op == "Softmax" or (c.op == "Add" and any(s.op == "Softmax" for s in c.outputs[0].outputs)):
            return True
    return False


def _constant_inputs(node: gs.Node) -> list | None:
    """The input values (None for an omitted optional input), or None if any input is computed at run time."""
    values = []
    for i, t in enumerate(node.inputs):
        if not t.name:
            values.append(None)
            continue
        if node.op in SHAPE_ONLY and i == 0:
            shape = t.shape
            if shape is None or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
                return None
            values.append(np.array(shape, np.int64))
            continue
        v = constant_value(t)
        if v is None:
            return None
        values.append(v)
    return values if node.inputs else None


def _replace_output(node: gs.Node, const: gs.Constant) -> None:
    replace_all_uses(node.outputs[0], const)
    detach(node)


def _detach_dead_constants(graph: gs.Graph) -> None:
    outputs = {o.name for o in graph.outputs}
    for node in graph.nodes:
        if node.op == "Constant" and node.outputs and not node.outputs[0].outputs and node.outputs[0].name not in outputs:
            detach(node)


# --- Conv + per-channel constant Add -> Conv bias ------------------------------------------------------------------
class FoldBiasAddPass(Pass):
    """``Conv(x, W[, b]) -> Add(., c)`` with ``c`` a per-output-channel (or scalar) constant becomes
    ``Conv(x, W, b + c)``. Every Add after a Conv that stays is recorded with the reason."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        folded = 0
        for add in [n for n in graph.nodes if n.op == "Add"]:
            conv, c = _conv_and_constant(add)
            if conv is None:
                continue
            reason = _why_not_bias(graph, conv, add, c)
            if reason is not None:
                ctx.decide(self.name, add.name, "kept", reason)
                continue
            _add_to_bias(graph, conv, c)
            out = add.outputs[0]
            detach(add)
            conv.outputs[0] = out
            folded += 1
            ctx.decide(self.name, add.name, "folded", f"into {conv.name}'s bias")
        if folded:
            graph.cleanup(remove_unused_node_outputs=False).toposort()
        return PassResult(graph, folded > 0, {"folded": folded})


def _conv_and_constant(add: gs.Node) -> tuple[gs.Node | None, np.ndarray | None]:
    for i in (0, 1):
        x, other = add.inputs[i], add.inputs[1 - i]
        if len(x.inputs) == 1 and x.inputs[0].op == "Conv" and is_constant(other):
            return x.inputs[0], constant_value(other)
    return None, None


def _why_not_bias(graph: gs.Graph, conv: gs.Node, add: gs.Node, c: np.ndarray) -> str | None:
    w = constant_value(conv.inputs[1])
    x = conv.outputs[0]
    if w is None or (len(conv.inputs) > 2 and conv.inputs[2].name and not is_constant(conv.inputs[2])):
        return f"{conv.name}'s weight or bias is not a constant"
    if len(x.outputs) != 1 or is_graph_output(graph, x):
        return f"{conv.name}'s output has other consumers"
    if c.dtype != w.dtype or c.ndim > w.ndim:
        return f"the constant {list(c.shape)} {c.dtype} does not broadcast as a per-channel bias"
    shape = (1,) * (w.ndim - c.ndim) + tuple(c.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, w.shape[0]):
        return f"the constant {list(c.shape)} is not per output channel"
    return None


def _add_to_bias(graph: gs.Graph, conv: gs.Node, c: np.ndarray) -> None:
    w = constant_value(conv.inputs[1])
    cout = w.shape[0]
    bias = np.zeros(cout, np.float64)
    if len(conv.inputs) > 2 and conv.inputs[2].name:
        bias += constant_value(conv.inputs[2]).astype(np.float64).reshape(-1)
    bias = (bias + np.broadcast_to(c.astype(np.float64).reshape(-1), (cout,))).astype(w.dtype)
    base = conv.inputs[2].name if len(conv.inputs) > 2 and conv.inputs[2].name else conv.inputs[1].name + "_bias"
    const = gs.Constant(fresh_name(base + "_addfold", graph.tensors()), bias)
    if len(conv.inputs) > 2:
        conv.inputs[2] = const
    else:
        conv.inputs.append(const)


# --- hard-swish ---------------------------------------------------------------------------------------------------
class RewriteHardSwishPass(Pass):
    """``x * Clip(x + b, 0, c) / c`` (or ``* (1/c)``; c = 6, b = 3 for hard-swish) becomes
    ``x * HardSigmoid(x, alpha=1/c, beta=b/c)``. In a QDQ graph the Mul runs as QLinearMul on the int8 input and
    only the HardSigmoid stays float; onnxruntime has no int8 HardSwish and decomposes HardSwish into the same two
    ops, so this is the form it runs fastest either way."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        rewritten = 0
        for last in [n for n in graph.nodes if n.op in ("Mul", "Div")]:
            match = _match_hardswish(graph, last)
            if match is None:
                continue
            x, alpha, beta, dead = match
            h = gs.Variable(fresh_name(last.outputs[0].name + "_hardsigmoid", graph.tensors()), dtype=x.dtype, shape=x.shape)
            graph.nodes.append(gs.Node("HardSigmoid", fresh_name(last.name + "_hardsigmoid", {n.name for n in graph.nodes}),
                                       attrs={"alpha": alpha, "beta": beta}, inputs=[x], outputs=[h]))
            last.op = "Mul"
            last.inputs.clear()
            last.inputs.extend([x, h])
            for node in dead:
                detach(node)
            rewritten += 1
            ctx.decide(self.name, last.name, "rewritten", f"hard-swish -> {x.name} * HardSigmoid({x.name})")
        if rewritten:
            graph.cleanup(remove_unused_node_outputs=False).toposort()
        return PassResult(graph, rewritten > 0, {"rewritten": rewritten})


def _match_hardswish(graph: gs.Graph, last: gs.Node):
    """(x, alpha, beta, nodes made dead) when ``last`` ends a hard-swish, else None."""
    k = constant_value(last.inputs[1]) if len(last.inputs) == 2 else None
    if k is None or k.size != 1 or not np.isfinite(k).all() or float(k.reshape(-1)[0]) == 0:
        return None
    scale = float(k.reshape(-1)[0]) if last.op == "Mul" else 1.0 / float(k.reshape(-1)[0])
    mul = _sole_producer(graph, last.inputs[0], "Mul")
    if mul is None:
        return None
    for x, other in ((mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])):
        clip = _sole_producer(graph, other, "Clip")
        add = _sole_producer(graph, clip.inputs[0], "Add") if clip is not None else None
        if add is None or not any(t is x for t in add.inputs):
            continue
        b = constant_value(add.inputs[1] if add.inputs[0] is x else add.inputs[0])
        lo, hi = _clip_bounds(clip)
        if b is None or b.size != 1 or lo != 0.0 or hi is None or hi <= 0 or abs(scale * hi - 1.0) > 1e-6:
            continue
        return x, float(1.0 / hi), float(b.reshape(-1)[0]) / hi, (mul, clip, add)
    return None


def _sole_producer(graph: gs.Graph, t: gs.Tensor, op: str) -> gs.Node | None:
    """The node of type ``op`` producing ``t`` when ``t`` has one consumer and is not a graph output."""
    if len(t.inputs) != 1 or t.inputs[0].op != op or len(t.outputs) != 1 or is_graph_output(graph, t):
        return None
    return t.inputs[0]


def _clip_bounds(clip: gs.Node) -> tuple[float | None, float | None]:
    def bound(i: int, key: str):
        if len(clip.inputs) > i and clip.inputs[i].name:
            v = constant_value(clip.inputs[i])
            return None if v is None or v.size != 1 else float(v.reshape(-1)[0])
        v = clip.attrs.get(key)
        return None if v is None else float(v)

    return bound(1, "min"), bound(2, "max")


# --- explicit Pad -> Conv -----------------------------------------------------------------------------------------
class FoldPadIntoConvPass(Pass):
    """``Pad(x, pads, 0) -> Conv`` with zero constant padding of the spatial axes only becomes ``Conv`` with the
    padding added to its ``pads``. onnxruntime does this for float graphs, but in a QDQ graph the Pad sits between
    a DequantizeLinear and a QuantizeLinear (a float round trip between two int8 Convs, which its Pad kernel does
    not run in int8). Every Pad before a Conv that stays is recorded with the reason."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        folded = 0
        for pad in [n for n in graph.nodes if n.op == "Pad"]:
            convs = [c for c in pad.outputs[0].outputs if c.op == "Conv"] if pad.outputs else []
            if not convs:
                continue
            reason = _why_not_pad(graph, pad, convs)
            if reason is not None:
                ctx.decide(self.name, pad.name, "kept", reason)
                continue
            spatial = _spatial_pads(pad)
            for conv in convs:
                conv.attrs["pads"] = [int(a) + int(b) for a, b in zip(_conv_pads(conv), spatial)]
                conv.inputs[0] = pad.inputs[0]
            if not pad.outputs[0].outputs:
                detach(pad)
            folded += 1
            ctx.decide(self.name, pad.name, "folded", f"into {', '.join(c.name for c in convs)}'s pads")
        if folded:
            graph.cleanup(remove_unused_node_outputs=False).toposort()
        return PassResult(graph, folded > 0, {"folded": folded})


def _pad_amounts(pad: gs.Node) -> np.ndarray | None:
    if len(pad.inputs) > 1 and pad.inputs[1].name:
        v = constant_value(pad.inputs[1])
        return None if v is None else np.asarray(v, np.int64).reshape(-1)
    v = pad.attrs.get("pads")  # opset < 11
    return None if v is None else np.asarray(v, np.int64)


def _spatial_pads(pad: gs.Node) -> list[int]:
    """Conv's ``pads`` layout [x1_begin, x2_begin, ..., x1_end, x2_end, ...] for the spatial axes."""
    p = _pad_amounts(pad)
    rank = p.size // 2
    return [int(v) for v in p[2:rank]] + [int(v) for v in p[rank + 2:]]


def _conv_pads(conv: gs.Node) -> list[int]:
    w = constant_value(conv.inputs[1])
    spatial = (w.ndim - 2) if w is not None else 2
    return list(conv.attrs.get("pads", [0] * (2 * spatial)))


def _why_not_pad(graph: gs.Graph, pad: gs.Node, convs: list[gs.Node]) -> str | None:
    if pad.attrs.get("mode", "constant") not in ("constant", b"constant"):
        return f"Pad mode {pad.attrs.get('mode')!r} is not constant"
    if len(pad.inputs) > 3 and pad.inputs[3].name:
        return "Pad with an axes input"
    if len(pad.inputs) > 2 and pad.inputs[2].name:
        value = constant_value(pad.inputs[2])
        if value is None or np.any(np.asarray(value) != 0):
            return "the padding value is not a constant 0"
    elif float(pad.attrs.get("value", 0.0)) != 0.0:
        return "the padding value is not 0"
    p = _pad_amounts(pad)
    if p is None or p.size % 2 or p.size < 6:
        return "the pads are not a constant of one begin/end pair per axis"
    rank = p.size // 2
    if np.any(p < 0) or p[0] or p[1] or p[rank] or p[rank + 1]:
        return "it pads the batch or channel axis, or crops (negative pads)"
    if is_graph_output(graph, pad.outputs[0]):
        return "its output is a graph output"
    for conv in convs:
        if conv.inputs[0] is not pad.outputs[0]:
            return f"{conv.name} reads it as its weight"
        if conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
            return f"{conv.name} uses auto_pad"
        if len(_conv_pads(conv)) != 2 * (rank - 2):
            return f"{conv.name}'s pads do not match the Pad's rank"
    return None
