"""Real models: the bundled ResNet/ViT (and the third-party PP-OCR classifier when fetched) prune at 0.1-0.7 to
valid graphs that ORT runs; on the bundled models the zeroing identity holds too."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxcompress.data.inputs import from_npz
from onnxcompress.ir.io import load_model
from onnxcompress.pruning import PruneConfig, analyze_groups
from support.common import BUNDLED, bundled_data, bundled_model, ort_outputs, zoo_member
from support.prune_helpers import prune_and_check
from support.stages import prune_model

THIRD_PARTY = zoo_member("ppocr_cls")


def _load(name: str):
    path = bundled_model(name)
    if not path.exists():
        pytest.skip(f"{path} is not built yet")
    return load_model(path), from_npz(bundled_data(name, "calib"))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_groups_and_exact_cut(name):
    model, calib = _load(name)
    info = analyze_groups(model)
    assert info["groups"], info["summary"]
    assert all(b["reasons"] for b in info["blocked"])
    prune_and_check(model, PruneConfig(ratio=0.3), rel=1e-4)


@pytest.mark.parametrize("name", BUNDLED)
@pytest.mark.parametrize("ratio", [0.1, 0.7])
def test_bundled_model_prunes_to_a_valid_graph(name, ratio):
    model, calib = _load(name)
    pruned, report = prune_model(model, PruneConfig(ratio=ratio, criterion="activation", max_samples=32), calib)
    onnx.checker.check_model(pruned, full_check=True)
    x = np.load(bundled_data(name, "eval"))["input"][:8]
    out = ort_outputs(pruned, {"input": x})
    assert out["logits"].shape == (8, 10) and np.isfinite(out["logits"]).all()
    assert report["after"]["macs"] < report["before"]["macs"]


@pytest.mark.parametrize("ratio", [0.1, 0.7])
def test_third_party_cnn_prunes_to_a_valid_graph(ratio):
    path = THIRD_PARTY / "model.onnx"
    if not path.exists():
        pytest.skip("run models/third_party/fetch.py to fetch the PP-OCR classifier")
    model, calib = load_model(path), from_npz(THIRD_PARTY / "calib.npz")
    pruned, report = prune_model(model, PruneConfig(ratio=ratio, round_to=8), calib)
    onnx.checker.check_model(pruned, full_check=True)
    x = np.load(THIRD_PARTY / "eval.npz")[model.graph.input[0].name][:4]
    out = next(iter(ort_outputs(pruned, {model.graph.input[0].name: x}).values()))
    assert out.shape == (4, 2) and np.isfinite(out).all()
    assert report["after"]["macs"] < report["before"]["macs"] and len(report["groups"]) >= 20
