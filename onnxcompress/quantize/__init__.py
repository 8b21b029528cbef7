"""Static INT8 quantization in QDQ format (rules -> plan -> streaming calibration -> Q/DQ insertion -> ORT check).

``quantize_model(model, calib, config) -> (qdq_model, report)``; the report holds quantized/skipped nodes with
reasons, the calibrator and ranges, size before/after and the int8 kernels read from ORT's optimized graph:
``{"int8_kernels": [...], "float_nodes": [...], "coverage": ...}``.
"""

from onnxcompress.quantize.api import quantize_model
from onnxcompress.quantize.config import QuantizeConfig, TensorOverride

__all__ = ["QuantizeConfig", "TensorOverride", "quantize_model"]

from onnxcompress._public import make_callable  # noqa: E402

make_callable(__name__)  # `onnxcompress.quantize(...)` stays the public function after this import
