"""Shared checks for the pruning tests: the zeroing identity that proves a cut correct."""

from __future__ import annotations

import numpy as np
import onnx

from onnxcompress.pruning import PruneConfig
from support.common import assert_close_rel, ort_outputs
from support.stages import prune_model


def random_feeds(model: onnx.ModelProto, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else batch
                for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def zeroed_reference(model: onnx.ModelProto, report: dict) -> onnx.ModelProto:
    """The ORIGINAL model with every removed position of every parameter slot set to zero."""
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    inits = {t.name: t for t in ref.graph.initializer}
    for rec in report["kept"]:
        t = inits.get(rec["tensor"])
        if t is None:
            continue
        values = onnx.numpy_helper.to_array(t).copy()
        removed = np.setdiff1d(np.arange(rec["size_before"]), rec["kept"])
        index = [slice(None)] * values.ndim
        index[rec["axis"]] = removed
        values[tuple(index)] = 0
        t.CopyFrom(onnx.numpy_helper.from_array(values, t.name))
    return ref


def prune_and_check(model: onnx.ModelProto, config: PruneConfig | None = None, rel: float = 1e-5, calib=None):
    """Prune; assert the result is valid, keeps the I/O signature and equals the zeroed original in ORT."""
    config = config or PruneConfig(ratio=0.5)
    before = model.SerializeToString()
    pruned, report = prune_model(model, config, calib)
    assert model.SerializeToString() == before, "the input model was modified"
    onnx.checker.check_model(pruned, full_check=True)
    sig = lambda m: ([(i.name, i.type.SerializeToString()) for i in m.graph.input],
                     [(o.name, o.type.tensor_type.elem_type) for o in m.graph.output])
    assert sig(pruned) == sig(model)
    inits = {t.name for t in pruned.graph.initializer}
    feeds = random_feeds(model)
    want = ort_outputs(zeroed_reference(model, report), feeds)
    got = ort_outputs(pruned, feeds)
    for name in want:
        assert got[name].shape == want[name].shape
        assert_close_rel(want[name], got[name], rel)
    assert all(vi.name not in inits for vi in pruned.graph.value_info)
    assert len(inits) == len(pruned.graph.initializer), "duplicate initializer names"
    return pruned, report


def shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    return {t.name: tuple(t.dims) for t in model.graph.initializer}
