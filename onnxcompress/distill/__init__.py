"""Distillation without a training loop: layer-wise reconstruction and attaching weights trained elsewhere."""

from onnxcompress.distill.attach import attach_weights, export_weights, load_mapping, read_weights
from onnxcompress.distill.reconstruct import DistillConfig, reconstruct

__all__ = ["DistillConfig", "reconstruct", "attach_weights", "export_weights", "load_mapping", "read_weights"]

from onnxcompress._public import make_callable  # noqa: E402

make_callable(__name__)  # `onnxcompress.distill(...)` stays the public function after this import
