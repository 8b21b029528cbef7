"""Distill entry points used by the CLI and the public API (load, run, check; saving is the caller's)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx

from onnxcompress.distill.attach import attach_weights, load_mapping, read_json, read_weights
from onnxcompress.distill.reconstruct import DistillConfig, reconstruct
from onnxcompress.errors import DataError, InputMismatchError
from onnxcompress.passes.base import PassContext


def kept_from_prune_report(section: dict[str, Any]) -> dict[str, list[int]]:
    """{tensor: kept indices} from a prune report section (its ``kept`` list of {tensor, axis, kept})."""
    return {r["tensor"]: list(r["kept"]) for r in section.get("kept", []) if isinstance(r, dict)}


def load_kept(path: str | os.PathLike | None) -> dict[str, list[int]]:
    """Kept channel indices {tensor: [indices]} from a JSON file: a report with a ``prune`` stage (report.json of
    `optimize`/`prune`), a prune report section, or a bare {tensor: [indices]} mapping."""
    if path is None:
        return {}
    data = read_json(path, "kept-channel record", "give the prune report JSON")
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object", hint='expected a prune report or {"tensor": [indices]}')
    for section in ((data.get("stages") or {}).get("prune"), data.get("prune"), data):
        if isinstance(section, dict) and isinstance(section.get("kept"), list):
            return kept_from_prune_report(section)
    if data and all(isinstance(v, list) for v in data.values()):
        return {k: list(v) for k, v in data.items()}
    raise DataError(f"{path} has no kept-channel record", hint='expected a prune report or {"tensor": [indices]}')


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
