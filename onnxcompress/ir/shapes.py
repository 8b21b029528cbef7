"""Shape inference: onnx's inference with optional concrete input shapes."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx

from onnxcompress.errors import InputMismatchError, ModelFormatError
from onnxcompress.ir.edit import expose_outputs
from onnxcompress.runtime.session import SessionOptions, make_session

log = logging.getLogger(__name__)


def parse_shape_overrides(items: list[str] | None) -> dict[str, list[int]]:
    """Parse ``name:1x3x224x224`` items (CLI ``--shape``)."""
    out: dict[str, list[int]] = {}
    for item in items or []:
        name, sep, dims = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = [int(d) for d in dims.lower().split("x")]
            if any(d <= 0 for d in out[name]):
                raise ValueError
        except ValueError as e:
            raise InputMismatchError(
                f"bad shape override '{item}'", hint="write it as NAME:DxDxD with positive integers, e.g. input:1x3x224x224"
            ) from e
    return out


def with_input_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]], default_dim: int = 1) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have concrete shapes (overrides, else symbolic dims -> default_dim)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inits = {t.name for t in copy.graph.initializer}
    names = [i.name for i in copy.graph.input if i.name not in inits]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise InputMismatchError(
            f"shape given for unknown input(s) {unknown}", hint=f"the model's inputs are {names}"
        )
    for inp in copy.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes:
            _set_dims(inp, dims, shapes[inp.name])
            continue
        for d in dims:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                d.ClearField("dim_param")
                d.dim_value = default_dim
    del copy.graph.value_info[:]
    for out in copy.graph.output:  # let inference recompute output dims from the new input dims
        if out.type.HasField("tensor_type"):
            for d in out.type.tensor_type.shape.dim:
                d.ClearField("dim_value")
                d.ClearField("dim_param")
    return copy


def _set_dims(inp, dims, values: list[int]) -> None:
    if len(dims) != len(values):
        raise InputMismatchError(
            f"input '{inp.name}' has rank {len(dims)}, the shape override has rank {len(values)}",
            hint="give one dimension per axis",
        )
    for d, v in zip(dims, values):
        if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
            raise InputMismatchError(
                f"input '{inp.name}' has static dim {d.dim_value} where the override says {v}",
                hint="only dynamic dimensions can be overridden",
            )
        d.ClearField("dim_param")
        d.dim_value = v


def infer_shapes(model: onnx.ModelProto, *, strict: bool = False) -> onnx.ModelProto:
    """onnx shape inference with data propagation; returns a new model."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=strict, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as e:
        raise ModelFormatError(f"shape inference failed: {e}", hint="check the model with onnx.checker") from e


def value_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """name -> shape for every typed value (inputs, outputs, value_info, initializers)."""
    out: dict[str, tuple] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim
            )
    for t in model.graph.initializer:
        out[t.name] = tuple(t.dims)
    return out


Shapes = dict[str, tuple]


def _concrete(shape: tuple | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def incomplete(model: onnx.ModelProto, shapes: Shapes) -> list[str]:
    """Top-level node outputs whose static shape is unknown or symbolic."""
    return [o for n in model.graph.node for o in n.output if o and not _concrete(shapes.get(o))]


def observed_shapes(model: onnx.ModelProto, feeds: dict[str, Any], names: list[str]) -> Shapes:
    """The shapes of ``names`` in one onnxruntime run on ``feeds`` ({} when the run fails: the caller keeps its
    static shapes). Static inference gives up on graphs that compute shapes at run time (Shape -> Slice -> Concat
    -> Reshape, common in Paddle and TF exports); one run on a real sample does not."""
    wanted = [n for n in names if n]
    try:
        session = make_session(expose_outputs(model, wanted), SessionOptions(opt_level="disable", memory_arena=False))
        values = session.run(wanted, {k: np.asarray(v) for k, v in feeds.items()})
    except Exception as e:  # any failure leaves the static shapes in place
        log.debug("observed shapes unavailable: %s", e)
        return {}
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(wanted, values) if isinstance(v, np.ndarray)}


def known_shapes(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None,
                 sample: dict[str, Any] | None = None) -> Shapes:
    """Static shapes for concrete input shapes (dynamic dims -> 1), completed by one run on ``sample`` (a batch
    of one, matching ``input_shapes``) where static inference leaves a node output unknown."""
    shapes = value_shapes(infer_shapes(with_input_shapes(model, input_shapes or {})))
    missing = incomplete(model, shapes) if sample else []
    if missing and sample:
        shapes.update(observed_shapes(model, sample, missing))
    return shapes
