"""Attach student weights trained elsewhere onto a (compressed) graph, name/shape/dtype checked (a pass).

``weights_io.export_weights`` writes the tensors a training framework must produce for this architecture;
:class:`AttachWeightsPass` puts them back (from ``.npz``, ``.safetensors`` or ``.onnx``, matched by name or through
a mapping) and lists every missing, extra, mis-shaped or mis-typed tensor in one error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.distillation.result import AttachResult
from onnxcompress.errors import DataError
from onnxcompress.passes.base import Pass, PassContext, PassResult


def trainable_constants(graph: gs.Graph) -> dict[str, gs.Constant]:
    """Floating-point constants with more than one element: the weights a trainer produces.

    Integer tensors (shapes, axes, indices) and scalars are part of the architecture, not of the weights.
    """
    return {name: t for name, t in graph.tensors().items()
            if isinstance(t, gs.Constant) and t.values.dtype.kind == "f" and t.values.size > 1}


@dataclass
class AttachProblems:
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    shape: list[str] = field(default_factory=list)
    dtype: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.shape or self.dtype)

    def describe(self) -> str:
        parts = []
        for label, items in (("missing", self.missing), ("extra (not in the model)", self.extra),
                             ("wrong shape", self.shape), ("wrong dtype", self.dtype)):
            if items:
                parts.append(f"{label}: " + "; ".join(items))
        return " | ".join(parts)


class AttachWeightsPass(Pass):
    """Replace the graph's trainable constants with ``weights`` (by name, or ``mapping``: model name -> file name);
    leaves an :class:`AttachResult`."""

    def __init__(self, weights: Mapping[str, np.ndarray], mapping: Mapping[str, str] | None = None, *,
                 allow_extra: bool = False):
        self.weights = dict(weights)
        self.mapping = dict(mapping or {})
        self.allow_extra = allow_extra

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        wanted = trainable_constants(graph)
        problems = AttachProblems()
        used: set[str] = set()
        new_values: dict[str, np.ndarray] = {}
        for name, t in wanted.items():
            src = self.mapping.get(name, name)
            if src not in self.weights:
                problems.missing.append(f"{name} {list(t.values.shape)}" + (f" (mapped from '{src}')" if src != name else ""))
                continue
            used.add(src)
            arr = np.asarray(self.weights[src])
            if list(arr.shape) != list(t.values.shape):
                problems.shape.append(f"{name}: model {list(t.values.shape)}, file {list(arr.shape)}")
            elif arr.dtype != t.values.dtype:
                problems.dtype.append(f"{name}: model {t.values.dtype}, file {arr.dtype}")
            else:
                new_values[name] = arr
        self._check(problems, used, wanted)
        for name, arr in new_values.items():
            wanted[name].values = arr
        extra = tuple(sorted(set(self.weights) - used))
        ctx.put(AttachResult(tuple(sorted(new_values)), self.mapping, extra))
        return PassResult(graph, bool(new_values), {"attached": len(new_values)})

    def _check(self, problems: AttachProblems, used: set[str], wanted: dict[str, gs.Constant]) -> None:
        unknown = sorted(set(self.mapping) - set(wanted))
        if unknown:
            problems.missing.append(f"mapping names {unknown} that are not trainable tensors of the model")
        if not self.allow_extra:
            problems.extra = sorted(set(self.weights) - used)
        if problems:
            raise DataError(
                f"the weights do not fit the model: {problems.describe()}",
                hint="export the expected names/shapes with `onnxcompress distill export-weights MODEL -o "
                     "student.npz`, or give a --mapping JSON file {model_name: file_name}")
