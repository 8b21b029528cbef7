"""Distill entry points used by the CLI and the public API (load, run, check; saving is the caller's)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress.distill.attach import attach_weights, load_mapping, read_weights
from onnxcompress.distill.reconstruct import DistillConfig, reconstruct
from onnxcompress.errors import DataError, InputMismatchError
from onnxcompress.passes.base import PassContext


def load_kept(path: str | os.PathLike | None) -> dict[str, list[int]]:
    """Kept channel indices {tensor: [indices]} from a JSON file: a bare mapping, or a prune report that has one
    under ``kept_channels`` (at the top level or in its ``prune`` section)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read kept-channel record {path}: {e}", hint="give the prune report JSON") from e
    for candidate in (data.get("kept_channels"), (data.get("prune") or {}).get("kept_channels"), data):
        if isinstance(candidate, dict) and all(isinstance(v, (list, dict)) for v in candidate.values()):
            return {k: (v["indices"] if isinstance(v, dict) else v) for k, v in candidate.items()}
    raise DataError(f"{path} has no kept-channel record", hint='expected {"tensor": [kept indices], ...}')


def distill(teacher: onnx.ModelProto, student: onnx.ModelProto, calib: Any, config: DistillConfig = DistillConfig(),
            *, kept: dict[str, list[int]] | None = None, ctx: PassContext | None = None
            ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Check that teacher and student share their inputs/outputs, then reconstruct the student."""
    t_io = [(i.name, i.type.tensor_type.elem_type) for i in teacher.graph.input]
    s_io = [(i.name, i.type.tensor_type.elem_type) for i in student.graph.input]
    if t_io != s_io:
        raise InputMismatchError(f"teacher inputs {t_io} differ from student inputs {s_io}",
                                 hint="the student must be a compressed copy of the teacher with the same inputs")
    return reconstruct(teacher, student, calib, config, kept=kept, ctx=ctx)


def attach(model: onnx.ModelProto, weights_path: str | os.PathLike, mapping_path: str | os.PathLike | None = None,
           data: Any = None, *, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Attach weights from a file and validate the result by running it (on ``data`` or seeded random inputs)."""
    from onnxcompress.data.inputs import load_input_data, model_input_specs, random_data
    from onnxcompress.runtime.session import SessionOptions, make_session, run

    out, report = attach_weights(model, read_weights(weights_path), load_mapping(mapping_path))
    specs = model_input_specs(out)
    feeds_data = load_input_data(data) if data is not None else random_data(specs, 2, seed=seed)
    feeds = next(feeds_data.batched(8).bind(specs).feeds())
    results = run(make_session(out, SessionOptions(providers="cpu")), feeds)
    bad = [k for k, v in results.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise DataError(f"the model with attached weights produces NaN/Inf in {bad}",
                        hint="check that the weights were trained for this architecture and dtype")
    report["validated_on"] = feeds_data.source
    return out, report
