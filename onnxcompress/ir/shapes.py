"""Shape inference: onnx's inference with optional concrete input shapes."""

from __future__ import annotations

import logging

import onnx

from onnxcompress.errors import InputMismatchError, ModelFormatError

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
