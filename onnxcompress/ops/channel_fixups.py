"""Fixups: node attributes and shape constants that encode a channel count, rewritten after a cut.

Keyed by (domain, op type, opset range) like the rules in ``channel_rules.py``; each receives the node, a
``kept(tensor, axis)`` lookup (kept
positions of a cut slot, None if untouched) and the pre-cut static shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.ir.query import constant_value
from onnxcompress.ops.channel_rules import Info, _int_list, _norm_axis, _present, slice_window
from onnxcompress.ops.registry import OpRegistry

Kept = Callable[[gs.Tensor, int], "np.ndarray | None"]  # kept positions of a cut slot, None if untouched


def set_constant(node: gs.Node, index: int, values: np.ndarray) -> None:
    """Give input ``index`` of ``node`` new constant values (a private copy when the constant is shared)."""
    old = node.inputs[index]
    values = np.asarray(values, dtype=constant_value(old).dtype)
    if isinstance(old, gs.Constant) and len(old.outputs) == 1:
        old.values = values
    else:
        node.inputs[index] = gs.Constant(f"{old.name}__{node.outputs[0].name}", values)  # output names are unique


def fix_conv(node: gs.Node, kept: Kept, shapes: Info) -> None:
    groups = int(node.attrs.get("group", 1))
    k = kept(node.inputs[0], 1)
    if groups > 1 and k is not None:
        node.attrs["group"] = groups * len(k) // shapes.shape(node.inputs[0])[1]


def fix_reshape(node: gs.Node, kept: Kept, shapes: Info) -> None:
    target = _int_list(node.inputs[1]) if len(node.inputs) > 1 else None
    if target is None:  # a computed shape: the rule blocked every tracked axis through this node
        return
    changed = False
    for b in range(len(target)):
        k = kept(node.outputs[0], b)
        if k is not None and target[b] > 0:
            target[b], changed = len(k), True
    if changed:
        set_constant(node, 1, np.array(target, dtype=np.int64))


def fix_split(node: gs.Node, kept: Kept, shapes: Info) -> None:
    x = node.inputs[0]
    k = _norm_axis(int(node.attrs.get("axis", 0)), shapes.rank(x))
    if kept(x, k) is None:
        return
    sizes = np.array([len(kept(o, k)) if kept(o, k) is not None else shapes.shape(o)[k] for o in node.outputs],
                     dtype=np.int64)
    node.attrs.pop("num_outputs", None)
    if "split" in node.attrs:
        node.attrs["split"] = [int(s) for s in sizes]
    elif len(node.inputs) > 1 and _present(node.inputs[1]):
        set_constant(node, 1, sizes)
    else:
        node.inputs.append(gs.Constant(f"{node.outputs[0].name}__split", sizes))


def fix_slice(node: gs.Node, kept: Kept, shapes: Info) -> None:
    x = node.inputs[0]
    xs, rank = shapes.shape(x), shapes.rank(x)
    starts, ends = _int_list(node.inputs[1]), _int_list(node.inputs[2])
    if rank is None or starts is None or ends is None:
        return  # the Slice rule blocked every group through a slice it cannot read
    axes = _int_list(node.inputs[3]) if len(node.inputs) > 3 and _present(node.inputs[3]) else None
    axes = [_norm_axis(a, rank) for a in (axes if axes is not None else range(len(starts)))]
    changed = False
    for i, axis in enumerate(axes):
        k = kept(x, axis)
        if k is None:
            continue
        start, end = slice_window(node, axis, xs)
        starts[i] = int(np.sum(k < start))
        ends[i] = starts[i] + int(np.sum((k >= start) & (k < end)))
        changed = True
    if changed:
        set_constant(node, 1, np.array(starts, dtype=np.int64))
        set_constant(node, 2, np.array(ends, dtype=np.int64))


Fixup = Callable[[gs.Node, Kept, Info], None]
FIXUPS: OpRegistry[Fixup] = OpRegistry("channel fixups")
FIXUPS.register_all("Conv ConvTranspose", fix_conv)
FIXUPS.register("Reshape", fix_reshape)
FIXUPS.register("Split", fix_split)
FIXUPS.register("Slice", fix_slice)
