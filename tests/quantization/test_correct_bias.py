"""Quantization-aware bias correction: the corrected QDQ model is closer to the float model, only int32 biases
change, and the result is deterministic."""

import numpy as np
import onnx

from onnxcompress import pipeline
from onnxcompress.ir.io import load_model
from onnxcompress.passes import PassContext
from onnxcompress.quantization import QuantizeConfig
from onnxcompress.recipe import Recipe
from support.common import bundled_data, bundled_model, ort_outputs
from support.stages import quantize_model


def _mse(a, b):
    return float(((a - b) ** 2).mean())


def test_bias_correction_on_resnet_reduces_error():
    model = load_model(bundled_model("resnet_mnist"))
    calib = str(bundled_data("resnet_mnist", "calib"))
    cfg = QuantizeConfig(placement="fixed", verify=False, calibration_samples=128)
    teacher = pipeline.preprocessed(model, Recipe(), PassContext())
    plain, _ = quantize_model(model, calib, cfg)
    corrected, rep = quantize_model(model, calib, QuantizeConfig(placement="fixed", verify=False, calibration_samples=128,
                                                                 bias_correction=True))
    bc = rep["bias_correction"]
    assert len(bc["corrected"]) >= 10 and bc["waves"] >= 5
    # structure: identical graphs except for int32 bias values
    assert [n.op_type for n in plain.graph.node] == [n.op_type for n in corrected.graph.node]
    changed = [a.name for a, b in zip(plain.graph.initializer, corrected.graph.initializer)
               if a.SerializeToString() != b.SerializeToString()]
    assert changed and all(t.data_type == onnx.TensorProto.INT32 for t in corrected.graph.initializer
                           if t.name in changed)
    # numerics, on evaluation data the correction never saw
    x = {"input": np.load(bundled_data("resnet_mnist", "eval"))["input"][:256]}
    ref = ort_outputs(teacher, x)["logits"]
    before, after = _mse(ort_outputs(plain, x)["logits"], ref), _mse(ort_outputs(corrected, x)["logits"], ref)
    assert after < 0.7 * before, (before, after)
    again, _ = quantize_model(model, calib, QuantizeConfig(placement="fixed", verify=False, calibration_samples=128,
                                                           bias_correction=True))
    assert again.SerializeToString() == corrected.SerializeToString()
    assert all(c["mean_abs_shift"] > 0 for c in bc["corrected"])
