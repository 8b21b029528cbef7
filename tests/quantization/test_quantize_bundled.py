"""The bundled real models: every Conv/Gemm/MatMul-with-weights runs as an int8 kernel; accuracy holds."""

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
    v = report["verification"]
    assert v["weighted_total"] > 0 and v["weighted_int8"] == v["weighted_total"], v["float_nodes"]
    assert report["size"]["after_bytes"] < 0.4 * report["size"]["before_bytes"]
    ev = np.load(evalf)
    x, labels = ev["input"][:300], ev["labels"][:300]
    ref = ort_outputs(model, {"input": x})["logits"]
    out = ort_outputs(qmodel, {"input": x})["logits"]
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.97
    assert (out.argmax(1) == labels).mean() >= (ref.argmax(1) == labels).mean() - 0.02
