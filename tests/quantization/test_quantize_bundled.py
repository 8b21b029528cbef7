"""The bundled real models with the default latency placement: it finds a faster plan, keeps the resnet's Convs and
the ViT's weighted MatMuls int8 (attention float), every node it leaves int8 runs as an int8 kernel, and
accuracy holds."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcompress.data.inputs import from_npz
from onnxcompress.ir.io import load_model
from onnxcompress.quantization import QuantizeConfig
from support.common import ort_outputs
from support.stages import quantize_model


def test_bundled_model(bundled):
    model_path, calib, evalf = bundled
    if not model_path.exists():
        pytest.skip(f"{model_path.name} is not built yet (models/build_*.py)")
    model = load_model(model_path)
    qmodel, report = quantize_model(model, from_npz(calib), QuantizeConfig(calibration_samples=256))
    v, p = report["verification"], report["placement"]
    assert p["faster"] and p["estimated_speedup"] > 1.5
    kept_float = set(p["float_nodes"])
    assert {f["node"] for f in v["float_nodes"]} <= kept_float  # what the plan has int8 runs as an int8 kernel
    heavy = [n for n in p["nodes"] if n["class"] in ("conv", "matmul") and n["float_us"] > 100]
    assert heavy and all(n["int8"] for n in heavy)  # the layers that carry the MACs stay int8
    if "vit" in model_path.name:
        assert {n["node"] for n in p["nodes"] if n["op"] == "Softmax"} <= kept_float
    assert report["size"]["after_bytes"] < 0.4 * report["size"]["before_bytes"]
    ev = np.load(evalf)
    x, labels = ev["input"][:300], ev["labels"][:300]
    ref = ort_outputs(model, {"input": x})["logits"]
    out = ort_outputs(qmodel, {"input": x})["logits"]
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.97
    assert (out.argmax(1) == labels).mean() >= (ref.argmax(1) == labels).mean() - 0.02
