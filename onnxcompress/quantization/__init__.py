"""INT8 quantization: rules (``ops.quant_rules``) -> plan -> streaming calibration -> Q/DQ insertion (static) or
run-time activation quantization (dynamic) -> optional bias correction -> verification on onnxruntime.

``stage.quantize_passes(config)`` is the stage; its :class:`QuantizeResult` holds quantized/skipped nodes with
reasons, the calibrator and ranges, sizes and the int8 kernels read from onnxruntime's optimized graph.
"""

from onnxcompress.quantization.config import QuantizeConfig, TensorOverride
from onnxcompress.quantization.correct_bias import CorrectBiasPass
from onnxcompress.quantization.dynamic import QuantizeDynamicPass
from onnxcompress.quantization.insert_qdq import QuantizeQDQPass
from onnxcompress.quantization.result import QuantizeResult
from onnxcompress.quantization.smooth import SmoothQuantPass
from onnxcompress.quantization.stage import VerifyQuantizationPass, quantizable_summary, quantize_passes

__all__ = ["QuantizeConfig", "TensorOverride", "QuantizeResult", "QuantizeQDQPass", "QuantizeDynamicPass",
           "SmoothQuantPass", "CorrectBiasPass", "VerifyQuantizationPass", "quantize_passes", "quantizable_summary"]
