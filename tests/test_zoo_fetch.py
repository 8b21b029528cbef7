"""The committed small zoo copies (models/third_party/small/, written by `fetch.py --small`) are intact.

Checks, per member: model.onnx matches the sha256 in info.json; calib/eval npz load with allow_pickle=False and
hold no object arrays; every array matches the model input's dtype, rank and static dims (the batch axis may
differ); onnxruntime runs the model on a few samples; on the whole small eval set the member's own metric
reproduces info.json's fp32_metric.  Needs only numpy, onnx and onnxruntime (no onnxcompress).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models" / "third_party"))
import zoo_index

SMALL = zoo_index.entries(zoo_index.SMALL)
EXPECTED = {"ppocr_cls", "silero_vad", "logreg_iris", "mnist_cntk"}
TOLERANCE = 0.02  # CPU kernels differ between machines: a flipped borderline sample is allowed


def test_small_members_present():
    assert {e.name for e in SMALL} >= EXPECTED


@pytest.fixture(params=SMALL, ids=lambda e: e.name)
def entry(request):
    return request.param


def test_sha256(entry):
    digest = hashlib.sha256(entry.model.read_bytes()).hexdigest()
    assert digest == entry.info["source"]["sha256"]


def _model_inputs(entry):
    m = onnx.load(str(entry.model))
    inits = {t.name for t in m.graph.initializer}
    out = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        out[vi.name] = (onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), dims)
    return out


@pytest.mark.parametrize("split", ["calib", "eval"])
def test_npz_matches_inputs(entry, split):
    arrays = zoo_index.load(getattr(entry, split))
    assert all(a.dtype != object for a in arrays.values())
    inputs = _model_inputs(entry)
    assert set(inputs) <= set(arrays), f"missing inputs {set(inputs) - set(arrays)}"
    n = zoo_index.n_samples(entry, arrays)
    assert n > 0
    for name, (dtype, dims) in inputs.items():
        a, ax = arrays[name], entry.batch_axis(name)
        assert a.dtype == dtype, name
        assert a.ndim == len(dims), name
        for i, (got, want) in enumerate(zip(a.shape, dims)):
            if i == ax:
                assert got == n
            elif want is not None:
                assert got == want, (name, i, got, want)
    if split == "eval":
        for k, v in zoo_index.extras(entry, arrays).items():
            assert v.shape[0] == n, k
            assert v.dtype.kind in "iuUf", (k, v.dtype)


def test_runs_and_reproduces_fp32_metric(entry):
    arrays = zoo_index.load(entry.eval)
    sess = zoo_index.session(entry.model)
    few = zoo_index.run(entry, sess, {**zoo_index.slice_feeds(entry, arrays, 0, 4)}, batch=4)
    assert all(np.isfinite(v).all() for v in few.values())
    outputs = zoo_index.run(entry, sess, arrays, batch=32)
    got = zoo_index.task_metric(entry, outputs, zoo_index.extras(entry, arrays))
    want = entry.info["fp32_metric"]
    checked = 0
    for k, v in want.items():
        if isinstance(v, float) and k in got:
            assert abs(got[k] - v) <= TOLERANCE, (k, got[k], v)
            checked += 1
    assert checked, "no numeric metric to compare"
